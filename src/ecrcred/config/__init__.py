"""The ecrcred config file: which registries get credentials from where.

Three modules, split by cost, because the kubelet execs us once per image:

- ``schema`` (pydantic, PyYAML): the file's model and its validation, with errors that name the
  file, the field path and what is expected. Imported only when the file has changed.
- ``load``: finds the file (flag, env, default), and keeps its validated, compiled form next to
  the token cache, keyed by the file's inode, size and timestamps, so an unchanged file costs one
  ``stat`` and one small JSON read.
- ``rules``: the compiled form as plain records, and the precedence that picks the rule for an
  image (kubelet glob matching; the most specific rule wins).
"""

DEFAULT_CONFIG_PATH = "/etc/ecrcred/config.yaml"
API_VERSION = "ecrcred.io/v1alpha1"
KIND = "EcrcredConfig"
DEFAULT_ROLE_ANNOTATIONS = ("eks.amazonaws.com/ecr-role-arn", "eks.amazonaws.com/role-arn")
