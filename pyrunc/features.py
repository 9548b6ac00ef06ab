"""``pyrunc features``: what this runtime implements (features.md, features-linux.md).

Determined by the code, not by the host, as the spec asks; seccomp is reported as not enabled
(by design: a config with ``linux.seccomp`` runs with a warning).
"""

from pyrunc import SPEC_VERSION, capabilities, jsonio, mounts, namespaces, validate


def features() -> dict:
    return {
        "ociVersionMin": validate.OCI_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(validate.HOOKS),
        "mountOptions": list(mounts.KNOWN),
        "linux": {
            "namespaces": sorted(namespaces.FLAGS),
            "capabilities": list(capabilities.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.implementation": "pyrunc"},
    }


def features_json() -> str:
    return jsonio.dumps(features(), indent=4)
