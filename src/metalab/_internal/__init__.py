"""Low-level helpers shared by every layer (no metalab imports above this)."""
