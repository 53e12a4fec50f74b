"""Losses as pure functions on tensors; each states its shapes and is tested against hand-worked numbers."""
