"""`crm demo`: the package's main job."""
