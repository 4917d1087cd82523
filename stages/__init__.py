"""Pipeline stages (one module each) and the shared code they import."""
