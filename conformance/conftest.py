"""pytest configuration for the conformance suite (see test_conformance.py)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "should: a SHOULD-level check of the OCI runtime spec "
                            "(deselect with -m 'not should')")
