"""The OCI runtime spec v1.3.0 as the suite's reference: its directory and schemas.

The spec directory comes from $OCI_SPEC_DIR, else <repo>/../shared/reference/
runtime-spec-v1.3.0.  The schemas are draft-04 JSON Schema files that refer to
each other by bare file name ("defs.json#/definitions/..."), so every file of
schema/ is registered under its name and validation resolves references there.
jsonschema is imported lazily: only the checks that validate need it.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPEC_DIR = REPO.parent / "shared" / "reference" / "runtime-spec-v1.3.0"

# Properties of the Features structure defined by spec v1.3.0 (features.md, features-linux.md).
FEATURES_KEYS = {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "annotations",
                 "potentiallyUnsafeConfigAnnotations", "linux"}


def spec_dir() -> Path:
    return Path(os.environ.get("OCI_SPEC_DIR") or DEFAULT_SPEC_DIR)


class Spec:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else spec_dir()
        # Without the spec's schemas the checks that validate against them are skipped (named),
        # the rest of the suite still runs.
        self.available = (self.path / "schema" / "state-schema.json").is_file()

    def schema(self, name: str) -> dict:
        if not self.available:
            from .registry import Skipped
            raise Skipped(f"the runtime spec's schemas are not at {self.path} (set OCI_SPEC_DIR)")
        return json.loads((self.path / "schema" / name).read_text())

    @cached_property
    def _registry(self):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4
        resources = []
        for f in sorted((self.path / "schema").glob("*.json")):
            contents = json.loads(f.read_text())
            resource = Resource.from_contents(contents, default_specification=DRAFT4)
            resources.append((f.name, resource))
        return Registry().with_resources(resources)

    def validate(self, document, schema_name: str) -> list[str]:
        """Schema errors of document (empty when valid), as 'path: message' lines."""
        import jsonschema
        validator = jsonschema.Draft4Validator(self.schema(schema_name), registry=self._registry)
        errors = []
        for err in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            errors.append(f"{where}: {err.message}")
        return errors

    @cached_property
    def features_linux_keys(self) -> set[str]:
        return set(self.schema("features-linux.json")["linux"]["properties"])
