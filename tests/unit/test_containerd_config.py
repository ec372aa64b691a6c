"""containerd config versions 1, 2 and 3, imports in order, and errors that say where we looked."""

from __future__ import annotations

import pytest

from ecrcred import containerd_config
from ecrcred.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "version"), [
    ('version = 3\n[plugins."io.containerd.cri.v1.images".pinned_images]\n'
     'sandbox = "r/p:3.10"\n', 3),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "r/p:3.10"\n', 2),
    ('[plugins.cri]\nsandbox_image = "r/p:3.10"\n', 1),
])
def test_sandbox_image_is_read_from_each_config_version(tmp_path, text, version):
    found = containerd_config.sandbox_image(write(tmp_path / "config.toml", text))
    assert (found.value, found.version) == ("r/p:3.10", version)


def test_a_v2_key_in_a_v3_file_is_not_the_sandbox_image(tmp_path):
    text = 'version = 3\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "old/p:1"\n'
    with pytest.raises(ConfigError):
        containerd_config.sandbox_image(write(tmp_path / "c.toml", text))


def test_imports_are_merged_in_order_and_the_last_one_wins(tmp_path):
    drop = tmp_path / "config.d"
    drop.mkdir()
    write(drop / "10-first.toml",
          'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "a/p:1"\n')
    write(drop / "20-second.toml",
          'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "b/p:2"\n')
    main = write(tmp_path / "config.toml",
                 'version = 2\nimports = ["config.d/*.toml"]\n'
                 '[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "main/p:0"\n'
                 '[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/etc/certs.d"\n')
    config = containerd_config.load(main)
    assert config.sandbox_image is not None
    assert config.sandbox_image.value == "b/p:2"
    assert config.sandbox_image.file.endswith("20-second.toml")
    assert len(config.files) == 3
    assert config.config_path is not None and config.config_path.value == "/etc/certs.d"


def test_deprecated_mirrors_are_noticed(tmp_path):
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
            'endpoint = ["https://mirror.example"]\n')
    config = containerd_config.load(write(tmp_path / "c.toml", text))
    assert config.has_mirrors is not None and config.has_mirrors.value == "docker.io"


def test_missing_sandbox_image_lists_every_place_looked(tmp_path):
    path = write(tmp_path / "c.toml", "version = 2\n")
    with pytest.raises(ConfigError) as err:
        containerd_config.sandbox_image(path)
    message = err.value.one_line()
    assert path in message
    for place in ("pinned_images.sandbox", "io.containerd.grpc.v1.cri", "sandbox_image"):
        assert place in message


@pytest.mark.parametrize(("text", "needle"), [
    ("not = [toml", "not valid TOML"),
    ("version = 7\n", "version 7"),
])
def test_bad_files_are_config_errors(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        containerd_config.load(write(tmp_path / "c.toml", text))
    assert needle in err.value.message


def test_missing_file_says_how_to_proceed(tmp_path):
    with pytest.raises(ConfigError) as err:
        containerd_config.load(str(tmp_path / "absent.toml"))
    assert "--image" in err.value.hint


def test_a_registry_key_that_is_not_a_table_is_ignored(tmp_path):
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "r/p:1"\n'
            'registry = "oops"\n')
    config = containerd_config.load(write(tmp_path / "c.toml", text))
    assert config.sandbox_image is not None and config.config_path is None
