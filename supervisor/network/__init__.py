"""Container networks: CNI plugin chains run by the supervisor (see docs/network.md).

- ``netns``    named network namespaces: created, bind-mounted under the state directory, removed;
- ``cni``      the CNI execution protocol (spec 1.0): ADD/DEL/CHECK of a plugin chain;
- ``config``   network records kept as CNI conflists, and the ones the supervisor writes;
- ``ports``    ``-p`` strings (and ranges), published port checks and random host ports;
- ``files``    a container's /etc/hosts, /etc/resolv.conf and /etc/hostname;
- ``resolver`` the containers' DNS resolver at 127.0.0.11 (``dnsmsg``: the DNS messages it reads
               and writes);
- ``manager``  attach/detach a container (crash-safe records), networks create/list/remove.

Nothing here imports grpc or the API layer: supervisor/api/networks.py translates.
"""
