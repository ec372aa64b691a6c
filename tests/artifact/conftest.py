"""The artifact fixtures (``artifact_dir``, ``artifact_tarball``, ``artifact_bin``) live in
``tests/conftest.py``: the Kubernetes manifest tests use them too."""
