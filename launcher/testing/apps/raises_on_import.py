"""An app whose module raises while being imported: the user's bug, shown once, never a boot loop."""

raise RuntimeError("the app failed while being imported")
