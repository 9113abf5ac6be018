"""stalwart.node (see DESIGN.md)."""
