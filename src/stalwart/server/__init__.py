"""stalwart.server (see DESIGN.md)."""
