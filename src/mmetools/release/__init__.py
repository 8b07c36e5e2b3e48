"""After the build: publish to the stores, evidence and provenance, the diff against the published
previous version, load tests. Imports every lower room, never pipeline, rendering or cli."""
