"""stalwart.chaos (see DESIGN.md)."""
