"""stalwart.verify (see DESIGN.md)."""
