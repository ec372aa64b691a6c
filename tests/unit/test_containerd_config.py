"""containerd config versions 1, 2 and 3, imports merged as each containerd generation merges
them, hosts.toml read (or ignored) as containerd reads it, and errors that say where we looked.

The merges of containerd 1.6 are also compared with the real ``containerd config dump`` in
tests/e2e/test_doctor.py."""

from __future__ import annotations

import pytest

from ecrcred import containerd_config, containerd_routes
from ecrcred.errors import ConfigError, ConfigMissing


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


V2_CRI = '[plugins."io.containerd.grpc.v1.cri"'
V3_IMAGES = '[plugins."io.containerd.cri.v1.images"'


def drop_ins(tmp_path, main, **files):
    """config.toml (``main``, importing config.d/*.toml by its absolute path) and drop-ins."""
    drop = tmp_path / "config.d"
    drop.mkdir(exist_ok=True)
    for name, text in files.items():
        write(drop / f"{name}.toml", text)
    return write(tmp_path / "config.toml", main.replace("IMPORTS", f'imports = ["{drop}/*.toml"]'))


V2_MAIN = ('version = 2\nIMPORTS\n'
           f'{V2_CRI}]\nsandbox_image = "main/p:0"\n'
           f'{V2_CRI}.registry]\nconfig_path = "/etc/certs.d"\n')


def test_containerd_1_imports_replace_a_plugins_whole_table_the_last_file_winning(tmp_path):
    # mergeConfig in 1.6/1.7: "Maps merged by keys, but values are replaced entirely"; each
    # drop-in's cri table replaces the one before, config_path of the main file included
    main = drop_ins(tmp_path, V2_MAIN,
                    **{"10-first": f'version = 2\n{V2_CRI}]\nsandbox_image = "a/p:1"\n',
                       "20-second": f'version = 2\n{V2_CRI}]\nsandbox_image = "b/p:2"\n'})
    config = containerd_config.load(main)
    assert config.sandbox_image is not None
    assert (config.sandbox_image.value, config.sandbox_image.version) == ("b/p:2", 2)
    assert config.sandbox_image.file.endswith("20-second.toml")
    assert len(config.files) == 3
    assert config.config_path is None, "replaced with the rest of the main file's cri table"


@pytest.mark.parametrize("drop_in", [
    pytest.param(f'{V2_CRI}.cni]\nbin_dir = "/opt/cni/bin"\n', id="another-cri-key"),
    pytest.param(f'{V2_CRI}.registry.mirrors."*"]\nendpoint = ["https://c.example"]\n',
                 id="only-a-wildcard-mirror"),
])
def test_containerd_1_loses_the_sandbox_image_to_a_drop_in_with_any_cri_table(tmp_path, drop_in):
    config = containerd_config.load(drop_ins(tmp_path, V2_MAIN, **{"50-drop": drop_in}))
    assert (config.sandbox_image, config.config_path) == (None, None)


def test_containerd_1_keeps_a_plugin_table_no_drop_in_names(tmp_path):
    main = drop_ins(tmp_path, V2_MAIN, **{"50-opt": '[plugins."io.containerd.internal.v1.opt"]'
                                                    '\npath = "/opt/x"\n'})
    config = containerd_config.load(main)
    assert config.sandbox_image is not None and config.sandbox_image.value == "main/p:0"
    assert config.config_path is not None and config.config_path.value == "/etc/certs.d"


@pytest.mark.parametrize(("version_line", "sandbox"), [
    pytest.param("", "drop/p:1", id="no-version: read as the main file's 2"),
    pytest.param("version = 1\n", None, id="version-1: the whole config is read as version 1"),
])
def test_containerd_1_reads_every_key_as_the_last_version_any_file_set(tmp_path, version_line,
                                                                        sandbox):
    main = drop_ins(tmp_path, V2_MAIN,
                    **{"50-drop": f'{version_line}{V2_CRI}]\nsandbox_image = "drop/p:1"\n'})
    found = containerd_config.load(main).sandbox_image
    assert (found.value if found else None) == sandbox


def test_a_short_plugin_name_in_a_version_2_config_keeps_containerd_from_starting(tmp_path):
    main = drop_ins(tmp_path, V2_MAIN, **{"50-old": '[plugins.cri]\nsandbox_image = "x/p:1"\n'})
    with pytest.raises(ConfigError) as err:
        containerd_config.load(main)
    assert err.value.message.startswith(
        f'[plugins."cri"] in {tmp_path}/config.d/50-old.toml is not a plugin URI')
    assert 'invalid plugin key URI "cri" expect io.containerd.x.vx' in err.value.message


V3_MAIN = ('version = 3\nIMPORTS\n'
           f'{V3_IMAGES}.pinned_images]\nsandbox = "main/p:0"\n'
           f'{V3_IMAGES}.registry]\nconfig_path = "/etc/certs.d"\n'
           f'{V3_IMAGES}.registry.mirrors."docker.io"]\nendpoint = ["https://hub.example"]\n')


def test_containerd_2_merges_imports_key_by_key(tmp_path):
    # cmd/containerd/server/config mergeConfig (2.x, PR 9982): mergo with override, no more
    # whole-section replacement of plugins; an array is replaced, not appended to
    main = drop_ins(tmp_path, V3_MAIN, **{
        "10-star": f'version = 3\n{V3_IMAGES}.registry.mirrors."*"]\n'
                   'endpoint = ["https://cache.example"]\n',
        "20-hub": f'version = 3\n{V3_IMAGES}.registry.mirrors."docker.io"]\n'
                  'endpoint = ["https://hub2.example"]\n'})
    config = containerd_config.load(main)
    assert config.sandbox_image is not None
    assert (config.sandbox_image.value, config.sandbox_image.version) == ("main/p:0", 3)
    assert config.config_path is not None and config.config_path.value == "/etc/certs.d"
    assert config.legacy["docker.io"].endpoints == ("https://hub2.example",)
    assert config.legacy["docker.io"].file.endswith("20-hub.toml")
    assert config.legacy["*"].endpoints == ("https://cache.example",)


@pytest.mark.parametrize("drop_in", [
    pytest.param(f'version = 2\n{V2_CRI}]\nsandbox_image = "drop/p:1"\n', id="version-2"),
    pytest.param(f'{V2_CRI}]\nsandbox_image = "drop/p:1"\n', id="no-version-uri"),
    pytest.param('[plugins.cri]\nsandbox_image = "drop/p:1"\n', id="no-version-short-name"),
])
def test_containerd_2_migrates_an_older_drop_in_before_merging_it(tmp_path, drop_in):
    # a drop-in below the root's version 3 is migrated first: v1Migrate, then the images
    # plugin's configMigration moves sandbox_image to pinned_images.sandbox
    config = containerd_config.load(drop_ins(tmp_path, V3_MAIN, **{"50-drop": drop_in}))
    assert config.sandbox_image is not None
    assert (config.sandbox_image.value, config.sandbox_image.version) == ("drop/p:1", 3)
    assert config.sandbox_image.file.endswith("50-drop.toml")
    assert config.config_path is not None and config.config_path.value == "/etc/certs.d"


def test_containerd_2_migrates_a_drop_ins_registry_table_whole(tmp_path):
    main = drop_ins(tmp_path, V3_MAIN, **{
        "50-drop": f'version = 2\n{V2_CRI}.registry]\nconfig_path = "/etc/drop-certs"\n'})
    config = containerd_config.load(main)
    assert config.config_path is not None
    assert config.config_path.value == "/etc/drop-certs"
    assert config.config_path.file.endswith("50-drop.toml")
    assert config.legacy["docker.io"].endpoints == ("https://hub.example",)


def test_an_import_that_does_not_exist_keeps_containerd_from_starting(tmp_path):
    main = write(tmp_path / "config.toml", 'version = 2\nimports = ["absent.toml"]\n')
    with pytest.raises(ConfigError) as err:
        containerd_config.load(main)
    assert not isinstance(err.value, ConfigMissing), "not 'no containerd here'"
    assert f"imports {tmp_path}/absent.toml, which does not exist: containerd does not start" in (
        err.value.message)


def test_containerd_1_globs_a_relative_import_pattern_from_its_working_directory(tmp_path):
    # resolveImports in 1.6.20 joins only plain paths to the importing file's directory; a
    # pattern is globbed as written, from the daemon's working directory ("/" under systemd)
    drop = tmp_path / "conf.d"
    drop.mkdir()
    write(drop / "10.toml", f'version = 2\n{V2_CRI}]\nsandbox_image = "drop/p:1"\n')
    write(tmp_path / "plain.toml", f'version = 2\n{V2_CRI}]\nsandbox_image = "plain/p:1"\n')
    v2 = write(tmp_path / "config.toml", 'version = 2\nimports = ["conf.d/*.toml"]\n')
    config = containerd_config.load(v2)
    assert config.files == (v2,)
    assert config.notes == (f'imports = ["conf.d/*.toml"] in {v2} is a relative pattern: '
                            "containerd 1.x globs it from its working directory (/ under "
                            f"systemd), not from {tmp_path}; write it as an absolute path",)
    write(tmp_path / "config.toml", 'version = 2\nimports = ["plain.toml"]\n')
    assert containerd_config.load(v2).files == (v2, str(tmp_path / "plain.toml"))
    write(tmp_path / "config.toml", 'version = 3\nimports = ["conf.d/*.toml"]\n')
    config = containerd_config.load(v2)
    assert (config.files, config.notes) == ((v2, str(drop / "10.toml")), ())


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


# -- registry_hosts: where containerd's CRI sends a pull ------------------------------------------

HOST = "registry.example.com"
NO_CONFIG = containerd_config.NO_CONFIG


def with_config_path(tmp_path, version=2):
    """A config whose config_path is ``certs.d`` under tmp_path, read as ``version`` (3: as
    containerd 2.x reads hosts.toml)."""
    certs = tmp_path / "certs.d"
    certs.mkdir(exist_ok=True)
    found = containerd_config.Found(str(certs), str(tmp_path / "config.toml"), version)
    return containerd_config.ContainerdConfig((found.file,), None, found, None), certs


def hosts_toml(certs, host, text):
    directory = certs / host
    directory.mkdir()
    return write(directory / "hosts.toml", text)


def urls(hosts):
    return [e.url for e in hosts.endpoints]


def test_hosts_toml_hosts_are_tried_in_file_order_then_the_server(tmp_path):
    config, certs = with_config_path(tmp_path)
    path = hosts_toml(certs, HOST, 'server = "https://upstream.example.com"\n'
                                   '[host."https://second-in-name.example.com"]\n'
                                   '[host."https://first-in-name.example.com"]\n')
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == ["https://second-in-name.example.com",
                           "https://first-in-name.example.com", "https://upstream.example.com"]
    assert hosts.origin == path
    assert hosts.host == HOST


@pytest.mark.parametrize(("host", "server"), [
    (HOST, f"https://{HOST}"),
    ("registry.example.com:5000", "https://registry.example.com:5000"),
    ("docker.io", "https://registry-1.docker.io"),
])
def test_without_a_server_key_the_server_is_the_host_itself(tmp_path, host, server):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, host, '[host."https://mirror.example.com"]\n')
    hosts = containerd_routes.registry_hosts(config, host)
    assert urls(hosts) == ["https://mirror.example.com", server]
    assert [e.mirror for e in hosts.endpoints] == [True, False]


@pytest.mark.parametrize(("host", "url", "mirror"), [
    pytest.param(HOST, f"https://{HOST}", False, id="own-host"),
    pytest.param(HOST, f"http://{HOST}/", False, id="own-host-http"),
    pytest.param(HOST, "https://mirror.example.com", True, id="other-host"),
    pytest.param(HOST, f"https://{HOST}:443", True, id="port-differs"),
    pytest.param("docker.io", "https://registry-1.docker.io", False, id="docker-hub-server"),
    pytest.param("docker.io", "https://mirror.gcr.io", True, id="docker-hub-mirror"),
    pytest.param(HOST, "https://registry-1.docker.io", True, id="hub-server-for-another-host"),
])
def test_an_endpoint_is_a_mirror_when_containerd_would_add_ns(tmp_path, host, url, mirror):
    # containerd's isProxy: any other host, except Docker Hub's own server for docker.io (a
    # hosts.toml with only a server: containerd 2.x reads it, 1.x wants a [host] table)
    config, certs = with_config_path(tmp_path, version=3)
    hosts_toml(certs, host, f'server = "{url}"\n')
    assert [e.mirror for e in containerd_routes.registry_hosts(config, host).endpoints] == [mirror]


def test_the_default_directory_answers_for_hosts_without_their_own(tmp_path):
    config, certs = with_config_path(tmp_path)
    path = hosts_toml(certs, "_default", '[host."https://cache.example.com"]\n'
                                         'capabilities = ["pull", "resolve"]\n')
    hosts_toml(certs, "other.example.com", "")
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == ["https://cache.example.com", f"https://{HOST}"]
    assert hosts.origin == path


def test_a_host_without_a_directory_goes_to_itself(tmp_path):
    config, certs = with_config_path(tmp_path)
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == [f"https://{HOST}"]
    assert hosts.origin == f"no {certs}/{HOST}/hosts.toml"
    assert hosts.endpoints[0].capabilities == containerd_routes.ALL_CAPABILITIES


def test_a_host_directory_of_certificates_only_trusts_its_crt_files_for_the_host(tmp_path):
    config, certs = with_config_path(tmp_path)
    directory = certs / HOST
    directory.mkdir()
    for name in ("b.crt", "a.crt", "client.cert", "client.key"):
        write(directory / name, "")
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == [f"https://{HOST}"]
    assert hosts.endpoints[0].ca == (str(directory / "a.crt"), str(directory / "b.crt"))
    assert hosts.origin == f"{directory} (no hosts.toml: certificates only)"
    assert hosts.notes == ()


def test_ca_skip_verify_and_override_path_are_read_per_host(tmp_path):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, 'ca = ["/etc/ssl/upstream.pem"]\n'
                            '[host."https://mirror.example.com/v2/hub"]\n'
                            'ca = ["/etc/ssl/a.pem", "/etc/ssl/b.pem"]\n'
                            "skip_verify = true\noverride_path = true\n")
    mirror, server = containerd_routes.registry_hosts(config, HOST).endpoints
    assert (mirror.ca, mirror.skip_verify, mirror.override_path) == (
        ("/etc/ssl/a.pem", "/etc/ssl/b.pem"), True, True)
    assert (server.ca, server.skip_verify, server.override_path) == (
        ("/etc/ssl/upstream.pem",), False, False)


def test_a_ca_string_is_one_ca_file_as_in_containerd_1_6(tmp_path):
    # seen on containerd 1.6.20: a mirror with ca = "<the registry's cert>" pulls
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, '[host."https://mirror.example.com"]\nca = "/etc/ssl/m.pem"\n')
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert hosts.endpoints[0].ca == ("/etc/ssl/m.pem",)
    assert hosts.notes == ()


@pytest.mark.parametrize(("line", "capabilities", "pulls"), [
    ("", ("pull", "resolve", "push"), True),
    ('capabilities = ["pull", "resolve"]\n', ("pull", "resolve"), True),
    ('capabilities = ["resolve"]\n', ("resolve",), False),
    # seen on containerd 1.6.20: both pull through the mirror
    ("capabilities = []\n", ("pull", "resolve", "push"), True),
    ('capabilities = ["PULL", "Resolve"]\n', ("pull", "resolve"), True),
])
def test_capabilities_default_to_all_and_say_whether_the_host_pulls(
        tmp_path, line, capabilities, pulls):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, f'[host."https://mirror.example.com"]\n{line}')
    mirror = containerd_routes.registry_hosts(config, HOST).endpoints[0]
    assert (mirror.capabilities, mirror.pulls) == (capabilities, pulls)


def test_a_host_url_without_a_scheme_is_https(tmp_path):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, '[host."mirror.example.com:5000"]\n')
    assert urls(containerd_routes.registry_hosts(config, HOST))[0] == (
        "https://mirror.example.com:5000")


MIRROR_TOML = '[host."https://mirror.example.com"]\ncapabilities = ["pull", "resolve"]\n'


def cert_files(directory):
    for name in ("ca.crt", "node.cert", "node.key"):
        write(directory / name, "")
    return (str(directory / "ca.crt"),), ((str(directory / "node.cert"),
                                           str(directory / "node.key")),)


@pytest.mark.parametrize(("text", "why"), [
    pytest.param("[host.\n" + MIRROR_TOML, "not valid TOML: ", id="not-toml"),
    pytest.param(MIRROR_TOML.replace('"resolve"', '"fly"'), "unknown capability fly",
                 id="unknown-capability"),
    pytest.param(MIRROR_TOML.replace('["pull", "resolve"]', '"pull"'),
                 "capabilities = 'pull' is not an array",
                 id="capabilities-string"),
    pytest.param(MIRROR_TOML + 'skip_verify = "yes"\n', "skip_verify = 'yes' is not a boolean",
                 id="skip-verify-string"),
    pytest.param(MIRROR_TOML + "ca = [1]\n", "ca = [1]: unable to cast", id="ca-not-strings"),
    pytest.param(MIRROR_TOML + "[host.\"https://mirror.example.com\".header]\nx = 1\n",
                 "invalid type 1 for header 'x'", id="header-number"),
    pytest.param('server = "https://mirror.example.com"\n', 'no [host."…"] table, which '
                 'containerd 1.x needs ("invalid `host` tree")', id="server-only-on-1.x"),
])
def test_a_hosts_toml_containerd_cannot_decode_is_ignored_for_the_directorys_cert_files(
        tmp_path, text, why):
    # loadHostDir: parseHostsFile fails, containerd logs "failed to decode hosts.toml" and
    # falls back to loadCertFiles; seen on containerd 1.6.20: the pull goes to the host itself
    # and fails on a broken *.cert in the directory
    config, certs = with_config_path(tmp_path)
    path = hosts_toml(certs, HOST, text)
    ca, client = cert_files(certs / HOST)
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == [f"https://{HOST}"]
    assert (hosts.endpoints[0].ca, hosts.endpoints[0].client) == (ca, client)
    assert hosts.endpoints[0].capabilities == containerd_routes.ALL_CAPABILITIES
    assert hosts.origin == f"{certs / HOST} (hosts.toml ignored: certificates only)"
    assert len(hosts.notes) == 1
    assert hosts.notes[0].startswith(f"containerd cannot decode {path} ({why}")
    assert hosts.notes[0].endswith('logs "failed to decode hosts.toml" and ignores the whole '
                                   f"file, so pulls go to https://{HOST} itself with only the "
                                   "directory's certificate files (*.crt, *.cert, *.key)")


def test_a_hosts_toml_with_only_a_server_is_read_by_containerd_2(tmp_path):
    config, certs = with_config_path(tmp_path, version=3)
    hosts_toml(certs, HOST, 'server = "https://upstream.example.com"\n')
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert (urls(hosts), hosts.notes) == (["https://upstream.example.com"], ())


def test_an_empty_hosts_toml_is_no_hosts_toml(tmp_path):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, "")
    ca, client = cert_files(certs / HOST)
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == [f"https://{HOST}"]
    assert (hosts.endpoints[0].ca, hosts.endpoints[0].client) == (ca, client)
    assert (hosts.origin, hosts.notes) == (
        f"{certs / HOST} (empty hosts.toml: certificates only)", ())


def test_a_hosts_toml_containerd_cannot_read_fails_every_pull_naming_it(tmp_path):
    # seen on containerd 1.6.20: "failed to resolve reference ...: read .../hosts.toml: is a
    # directory", and no endpoint is tried
    config, certs = with_config_path(tmp_path)
    path = certs / HOST / "hosts.toml"
    path.mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        containerd_routes.registry_hosts(config, HOST)
    assert err.value.message.startswith(f"cannot read {path} (not a regular file): containerd "
                                        f"fails every pull from {HOST}")


def test_a_host_with_a_port_is_looked_up_as_host_port_underscore_first(tmp_path):
    # hostDirectory: "host:5000" -> "host_5000_", before "host:5000"; seen on containerd 1.6.20
    config, certs = with_config_path(tmp_path)
    path = hosts_toml(certs, f"{HOST}_5000_", MIRROR_TOML)
    hosts_toml(certs, f"{HOST}:5000", "[host.\n")
    hosts = containerd_routes.registry_hosts(config, f"{HOST}:5000")
    assert (hosts.origin, urls(hosts)) == (path, ["https://mirror.example.com",
                                                  f"https://{HOST}:5000"])


def test_cert_files_are_taken_in_name_order_hidden_ones_too_directories_skipped(tmp_path):
    config, certs = with_config_path(tmp_path)
    directory = certs / HOST
    directory.mkdir()
    (directory / "dir.crt").mkdir()
    for name in ("b.crt", ".hidden.crt", "a.crt"):
        write(directory / name, "")
    endpoint = containerd_routes.registry_hosts(config, HOST).endpoints[0]
    assert endpoint.ca == tuple(str(directory / n) for n in (".hidden.crt", "a.crt", "b.crt"))


# -- the deprecated registry.mirrors / registry.configs ------------------------------------------

V2_REGISTRY = '[plugins."io.containerd.grpc.v1.cri".registry'


def test_a_host_without_any_registry_config_goes_to_its_default_server():
    hosts = containerd_routes.registry_hosts(NO_CONFIG, "docker.io")
    assert urls(hosts) == ["https://registry-1.docker.io"]
    assert hosts.origin == "no registry config for this host"
    assert hosts.endpoints[0].mirror is False


def test_legacy_mirrors_are_tried_then_the_host_itself(tmp_path):
    path = write(tmp_path / "c.toml", f'version = 2\n{V2_REGISTRY}.mirrors."docker.io"]\n'
                                      'endpoint = ["https://mirror.example.com", '
                                      '"https://mirror2.example.com/"]\n')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), "docker.io")
    assert urls(hosts) == ["https://mirror.example.com", "https://mirror2.example.com",
                           "https://registry-1.docker.io"]
    assert [e.mirror for e in hosts.endpoints] == [True, True, False]
    assert hosts.origin == f'registry.mirrors/configs."docker.io" in {path} (deprecated)'


def test_legacy_mirrors_naming_the_default_server_do_not_list_it_twice(tmp_path):
    path = write(tmp_path / "c.toml", f'version = 2\n{V2_REGISTRY}.mirrors."{HOST}"]\n'
                                      f'endpoint = ["https://{HOST}", "https://m.example.com"]\n')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert urls(hosts) == [f"https://{HOST}", "https://m.example.com"]


def test_legacy_tls_settings_apply_to_the_endpoint_whose_host_they_name(tmp_path):
    path = write(tmp_path / "c.toml",
                 f'version = 2\n{V2_REGISTRY}.mirrors."{HOST}"]\n'
                 'endpoint = ["https://mirror.example.com"]\n'
                 f'{V2_REGISTRY}.configs."mirror.example.com".tls]\n'
                 'ca_file = "/etc/ssl/mirror.pem"\n'
                 f'{V2_REGISTRY}.configs."{HOST}".tls]\n'
                 "insecure_skip_verify = true\n")
    mirror, server = containerd_routes.registry_hosts(containerd_config.load(path),
                                                      HOST).endpoints
    assert (mirror.ca, mirror.skip_verify) == (("/etc/ssl/mirror.pem",), False)
    assert (server.ca, server.skip_verify) == ((), True)


LEGACY_DROP_INS = {
    "10-auth": f'{V2_REGISTRY}.configs."{HOST}".auth]\n'
               'username = "robot"\npassword = "static-secret"\n',
    "15-tls": f'{V2_REGISTRY}.configs."{HOST}".tls]\nca_file = "/etc/ssl/r.pem"\n',
    "20-mirror": f'{V2_REGISTRY}.mirrors."{HOST}"]\nendpoint = ["https://late.example.com"]\n',
}


@pytest.mark.parametrize("version", [2, 3])
def test_legacy_settings_across_imports_as_each_containerd_merges_them(tmp_path, version):
    main = drop_ins(tmp_path, f'version = {version}\nIMPORTS\n{V2_REGISTRY}.mirrors."{HOST}"]\n'
                              'endpoint = ["https://early.example.com"]\n'.replace(
                                  V2_REGISTRY, V2_REGISTRY if version == 2 else
                                  '[plugins."io.containerd.cri.v1.images".registry'),
                    **{k: "version = 2\n" + v for k, v in LEGACY_DROP_INS.items()})
    config = containerd_config.load(main)
    legacy = config.legacy[HOST]
    assert legacy.endpoints == ("https://late.example.com",)
    assert legacy.file.endswith("20-mirror.toml")
    if version == 2:  # 1.x: the last drop-in's cri table is all there is
        assert (legacy.ca_file, legacy.has_auth) == (None, False)
    else:  # 2.x: each drop-in, migrated, adds its keys (their registry tables whole)
        assert (legacy.ca_file, legacy.has_auth) == ("/etc/ssl/r.pem", True)
    assert "static-secret" not in repr(config), "the static password is never kept"
    assert urls(containerd_routes.registry_hosts(config, HOST)) == [
        "https://late.example.com", f"https://{HOST}"]


@pytest.mark.parametrize(("auth", "has_auth"), [
    ('username = "u"\npassword = "p"\n', True),
    ('auth = "dTpw"\n', True),
    ('identitytoken = "t"\n', True),
    ('username = ""\n', False),
])
def test_static_registry_configs_credentials_are_noticed(tmp_path, auth, has_auth):
    path = write(tmp_path / "c.toml", f'version = 2\n{V2_REGISTRY}.configs."{HOST}".auth]\n{auth}')
    assert containerd_config.load(path).legacy[HOST].has_auth is has_auth


def test_legacy_settings_are_ignored_once_config_path_is_set(tmp_path):
    certs = tmp_path / "certs.d"
    certs.mkdir()
    path = write(tmp_path / "c.toml",
                 f'version = 2\n{V2_REGISTRY}]\nconfig_path = "{certs}"\n'
                 f'{V2_REGISTRY}.mirrors."{HOST}"]\nendpoint = ["https://mirror.example.com"]\n')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert urls(hosts) == [f"https://{HOST}"]


def test_a_v3_config_path_is_read_from_the_images_plugin(tmp_path):
    path = write(tmp_path / "c.toml", 'version = 3\n[plugins."io.containerd.cri.v1.images".'
                                      'registry]\nconfig_path = "/etc/containerd/certs.d"\n')
    found = containerd_config.load(path).config_path
    assert found is not None and (found.value, found.version) == ("/etc/containerd/certs.d", 3)


def test_a_legacy_endpoint_path_replaces_v2_as_containerd_uses_it(tmp_path):
    # containerd's legacy route sets Path "/v2" only when the endpoint has no path of its own
    path = write(tmp_path / "c.toml", f'version = 2\n{V2_REGISTRY}.mirrors."docker.io"]\n'
                                      'endpoint = ["https://proxy.example.com/v2/hub", '
                                      '"https://mirror.example.com/"]\n')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), "docker.io")
    assert [(e.url, e.override_path) for e in hosts.endpoints] == [
        ("https://proxy.example.com/v2/hub", True), ("https://mirror.example.com", False),
        ("https://registry-1.docker.io", False)]


# -- client certificates (mutual TLS) -------------------------------------------------------------

@pytest.mark.parametrize(("line", "pairs"), [
    pytest.param('client = "/etc/c/both.pem"', (("/etc/c/both.pem", ""),), id="one-file"),
    # containerd reads each string of an array as a file holding a certificate AND its key:
    # two strings are two such files, not a certificate and its key
    pytest.param('client = ["/etc/c/a.pem", "/etc/c/b.pem"]',
                 (("/etc/c/a.pem", ""), ("/etc/c/b.pem", "")), id="array-of-files"),
    pytest.param('client = [["/etc/c/cert.pem", "/etc/c/key.pem"]]',
                 (("/etc/c/cert.pem", "/etc/c/key.pem"),), id="array-of-pairs"),
    pytest.param('client = ["/etc/c/both.pem", ["/etc/c/cert.pem", "/etc/c/key.pem"]]',
                 (("/etc/c/both.pem", ""), ("/etc/c/cert.pem", "/etc/c/key.pem")), id="mixed"),
    pytest.param("", (), id="none"),
])
def test_client_certificates_are_read_in_each_shape_containerd_accepts(tmp_path, line, pairs):
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, f'{line}\n[host."https://mirror.example.com"]\n{line}\n')
    mirror, server = containerd_routes.registry_hosts(config, HOST).endpoints
    assert mirror.client == pairs, "a [host] entry"
    assert server.client == pairs, "the top level, for the server"


def test_relative_client_and_ca_paths_are_in_the_host_directory(tmp_path):
    # containerd's makeAbsPath: relative to the directory holding hosts.toml
    config, certs = with_config_path(tmp_path)
    hosts_toml(certs, HOST, '[host."https://mirror.example.com"]\nca = ["ca.pem"]\n'
                            'client = [["client.cert", "/abs/client.key"]]\n')
    mirror = containerd_routes.registry_hosts(config, HOST).endpoints[0]
    assert mirror.ca == (str(certs / HOST / "ca.pem"),)
    assert mirror.client == ((str(certs / HOST / "client.cert"), "/abs/client.key"),)


@pytest.mark.parametrize("value", [
    "5", '[["/etc/c/cert.pem"]]', '[["/a.pem", "/b.pem", "/c.pem"]]', "[1]",
    '{ cert = "/a.pem" }',
])
def test_a_client_shape_containerd_cannot_read_makes_it_ignore_the_hosts_toml(tmp_path,
                                                                               value):
    # seen on containerd 1.6.20 with client = 5: "failed to decode hosts.toml"
    config, certs = with_config_path(tmp_path)
    path = hosts_toml(certs, HOST, f'[host."https://mirror.example.com"]\nclient = {value}\n')
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == [f"https://{HOST}"]
    assert hosts.notes[0].startswith(f"containerd cannot decode {path} (client = ")
    assert 'write client = [["/path/cert.pem", "/path/key.pem"]]' in hosts.notes[0]
    assert "ignores the whole file" in hosts.notes[0]


def test_a_certificates_only_directory_gives_its_cert_files_as_client_certificates(tmp_path):
    # containerd's loadCertFiles: x.cert with x.key beside it, or a .cert holding its own key
    config, certs = with_config_path(tmp_path)
    directory = certs / HOST
    directory.mkdir()
    for name in ("ca.crt", "with-key.cert", "with-key.key", "alone.cert", "stray.key"):
        write(directory / name, "")
    endpoint = containerd_routes.registry_hosts(config, HOST).endpoints[0]
    assert endpoint.ca == (str(directory / "ca.crt"),)
    assert endpoint.client == ((str(directory / "alone.cert"), ""),
                               (str(directory / "with-key.cert"), str(directory / "with-key.key")))


def test_legacy_tls_cert_and_key_files_are_the_client_pair_of_the_endpoint_they_name(tmp_path):
    path = write(tmp_path / "c.toml",
                 f'version = 2\n{V2_REGISTRY}.mirrors."{HOST}"]\n'
                 'endpoint = ["https://mirror.example.com"]\n'
                 f'{V2_REGISTRY}.configs."mirror.example.com".tls]\n'
                 'cert_file = "/etc/ssl/node.pem"\nkey_file = "/etc/ssl/node.key"\n')
    mirror, server = containerd_routes.registry_hosts(containerd_config.load(path),
                                                      HOST).endpoints
    assert mirror.client == (("/etc/ssl/node.pem", "/etc/ssl/node.key"),)
    assert server.client == ()


@pytest.mark.parametrize(("line", "given", "missing"), [
    ('cert_file = "/etc/ssl/node.pem"', "cert_file", "key_file"),
    ('key_file = "/etc/ssl/node.key"', "key_file", "cert_file"),
])
def test_a_legacy_cert_file_without_its_key_file_is_a_config_error(tmp_path, line, given,
                                                                   missing):
    # containerd's getTLSConfig refuses half a pair, and with it every pull through the endpoint
    path = write(tmp_path / "c.toml", f'version = 2\n{V2_REGISTRY}.configs."{HOST}".tls]\n{line}\n')
    with pytest.raises(ConfigError) as err:
        containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert f'registry.configs."{HOST}".tls in {path} sets {given} without {missing}' in (
        err.value.message)


# -- the legacy registry.mirrors."*" -------------------------------------------------------------

WILDCARD = (f'version = 2\n{V2_REGISTRY}.mirrors."*"]\n'
            'endpoint = ["https://cache.example.com"]\n'
            f'{V2_REGISTRY}.configs."cache.example.com".tls]\nca_file = "/etc/ssl/cache.pem"\n')


def test_legacy_mirrors_wildcard_stands_in_for_a_host_without_an_entry_of_its_own(tmp_path):
    path = write(tmp_path / "c.toml", WILDCARD)
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert urls(hosts) == ["https://cache.example.com", f"https://{HOST}"]
    assert [e.mirror for e in hosts.endpoints] == [True, False]
    assert hosts.endpoints[0].ca == ("/etc/ssl/cache.pem",), "the mirror's own tls table"
    assert hosts.origin == (f'registry.mirrors."*" in {path} (deprecated; {HOST} has no '
                            "mirrors entry of its own)")


def test_a_host_with_only_registry_configs_still_gets_the_wildcard_mirrors(tmp_path):
    # containerd picks the endpoints from registry.mirrors alone; configs only add TLS and auth
    path = write(tmp_path / "c.toml",
                 WILDCARD + f'{V2_REGISTRY}.configs."{HOST}".tls]\ninsecure_skip_verify = true\n')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert urls(hosts) == ["https://cache.example.com", f"https://{HOST}"]
    assert [e.skip_verify for e in hosts.endpoints] == [False, True]


@pytest.mark.parametrize(("entry", "expected"), [
    pytest.param('endpoint = ["https://own.example.com"]\n',
                 ["https://own.example.com", f"https://{HOST}"], id="own-endpoints"),
    pytest.param("", [f"https://{HOST}"], id="own-entry-without-endpoints"),
])
def test_a_host_with_its_own_mirrors_entry_ignores_the_wildcard(tmp_path, entry, expected):
    # Mirrors[host] is taken whenever the key exists, even with no endpoints in it
    path = write(tmp_path / "c.toml", WILDCARD + f'{V2_REGISTRY}.mirrors."{HOST}"]\n{entry}')
    hosts = containerd_routes.registry_hosts(containerd_config.load(path), HOST)
    assert urls(hosts) == expected
    assert hosts.origin == f'registry.mirrors/configs."{HOST}" in {path} (deprecated)'


def test_a_wildcard_from_an_import_replaces_the_main_files_mirrors_on_containerd_1(tmp_path):
    # the drop-in's cri table replaces the main one: docker.io loses its own mirror (and the
    # sandbox image goes with it), so the wildcard applies to docker.io as well; as
    # `containerd config dump` shows on 1.6.20 (tests/e2e/test_doctor.py)
    main = drop_ins(tmp_path, 'version = 2\nIMPORTS\n'
                              f'{V2_CRI}]\nsandbox_image = "main/p:0"\n'
                              f'{V2_REGISTRY}.mirrors."docker.io"]\n'
                              'endpoint = ["https://hub.example.com"]\n',
                    **{"10-wildcard": WILDCARD})
    config = containerd_config.load(main)
    assert config.sandbox_image is None
    assert urls(containerd_routes.registry_hosts(config, HOST))[0] == "https://cache.example.com"
    assert urls(containerd_routes.registry_hosts(config, "docker.io")) == [
        "https://cache.example.com", "https://registry-1.docker.io"]


def within(seconds, call):
    """``call()``'s result or exception, failing the test (not hanging it) when it blocks."""
    import threading

    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for {seconds}s"
    return outcome[0]


def test_a_fifo_as_the_containerd_config_is_reported_unreadable_not_waited_on(tmp_path):
    import os

    path = tmp_path / "config.toml"
    os.mkfifo(path)
    err = within(5, lambda: containerd_config.load(str(path)))
    assert isinstance(err, ConfigError) and not isinstance(err, ConfigMissing)
    assert err.message == f"cannot read containerd config {path}: not a regular file"


def test_a_fifo_as_a_hosts_toml_is_reported_unreadable_not_waited_on(tmp_path):
    import os

    config, certs = with_config_path(tmp_path)
    (certs / HOST).mkdir()
    path = certs / HOST / "hosts.toml"
    os.mkfifo(path)
    err = within(5, lambda: containerd_routes.registry_hosts(config, HOST))
    assert isinstance(err, ConfigError)
    assert err.message.startswith(f"cannot read {path} (not a regular file): containerd "
                                  f"fails every pull from {HOST}")


def test_a_containerd_config_larger_than_a_mebibyte_is_not_read(tmp_path):
    path = write(tmp_path / "config.toml", "#" * (containerd_config.MAX_FILE + 1))
    with pytest.raises(ConfigError) as err:
        containerd_config.load(path)
    assert err.value.message == f"cannot read containerd config {path}: larger than 1 MiB"


def test_containerd_2_reads_no_registry_configs_tls_so_neither_does_the_route(tmp_path):
    # 2.1.9 keeps the deprecated registry.mirrors but ignores registry.configs.tls (measured:
    # the pull then fails TLS against the mirror's private CA), so doctor must not probe the
    # mirror with a CA containerd will not use.
    v3 = WILDCARD.replace("version = 2", "version = 3").replace(
        V2_REGISTRY, '[plugins."io.containerd.cri.v1.images".registry')
    config = containerd_config.load(write(tmp_path / "c.toml", v3))
    assert config.version == 3
    hosts = containerd_routes.registry_hosts(config, HOST)
    assert urls(hosts) == ["https://cache.example.com", f"https://{HOST}"]
    assert hosts.endpoints[0].ca == ()
    v2 = containerd_config.load(write(tmp_path / "c2.toml", WILDCARD))
    assert containerd_routes.registry_hosts(v2, HOST).endpoints[0].ca == ("/etc/ssl/cache.pem",)
