"""One reader per dataset release: `read(root, bad, **options) -> list[VQASample]`.

Readers parse the release files as shipped. Image paths stay relative to `root`; the datamodule resolves
them, refuses any that escape `root`, and checks they exist.
"""
