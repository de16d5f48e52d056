"""deploy/: the files operators use — TLS material, the Flower App definition, compose and Dockerfiles.

Docker's engine is not available in the test environment: the images are not built here; these tests
check that compose.yaml, the Dockerfiles and the app definition fit together and with the code."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import stat
import tomllib
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from deploy import certs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_certs_chain_and_names(tmp_path):
    paths = certs.generate(tmp_path / "c", hosts=["superlink", "link.example.org"], ips=["10.0.0.7"])
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    srv = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    srv.verify_directly_issued_by(ca)  # raises if the server certificate is not signed by the CA
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) >= {"localhost", "superlink", "link.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) >= {ipaddress.ip_address(a) for a in ("127.0.0.1", "10.0.0.7")}
    eku = srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    for private in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # Regenerating replaces the files (a rotated CA), it never appends.
    before = paths.ca_cert.read_bytes()
    again = certs.generate(tmp_path / "c")
    assert again.ca_cert.read_bytes() != before
    x509.load_pem_x509_certificate(again.server_cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(again.ca_cert.read_bytes()))


def test_app_definition_is_valid_and_fab_carries_no_code():
    from flwr.cli.build import build_fab_from_disk
    from flwr.cli.config_utils import load_and_validate

    config, _warnings = load_and_validate(DEPLOY / "app" / "pyproject.toml")  # also resolves both components
    flwr_cfg = config["tool"]["flwr"]
    assert flwr_cfg["app"]["components"] == {
        "serverapp": "coordinator.server_app:app",
        "clientapp": "node.client_app:app",
    }
    # Connections live in the Flower config since 1.41: a [tool.flwr.federations] table would make
    # `flwr run` rewrite this file (legacy migration).
    assert "federations" not in flwr_cfg
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(DEPLOY / "app")))
    assert [n for n in fab.namelist() if not n.startswith(".info/")] == ["pyproject.toml"]


def test_app_run_config_matches_federation_config():
    from coordinator.server_app import FederationConfig

    cfg = tomllib.loads((DEPLOY / "app" / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    fields = {f.name: f for f in dataclasses.fields(FederationConfig)}
    unknown = [k for k in cfg if k.replace("-", "_") not in fields]
    assert not unknown, f"run-config keys the ServerApp ignores: {unknown}"
    import json

    from model.presets import PRESETS

    assert json.loads(cfg["featurizer"]) == PRESETS["minilm"]  # the app's default is a preset
    # A FederationConfig can be built from the defaults, as the ServerApp does.
    kwargs = {k.replace("-", "_"): v for k, v in cfg.items()}
    kwargs["featurizer"] = json.loads(kwargs["featurizer"])
    built = FederationConfig(**kwargs)
    # the deployment's training defaults are the one training configuration's (model/training_config.py)
    from model.training_config import TRAINING

    stale = {f.name: (getattr(built, f.name), getattr(TRAINING, f.name)) for f in dataclasses.fields(TRAINING)
             if f.name.replace("_", "-") in cfg and getattr(built, f.name) != getattr(TRAINING, f.name)}
    assert stale == {}, f"deploy/app/pyproject.toml disagrees with TRAINING: {stale}"


def test_smoke_app_definition_is_valid():
    from flwr.cli.config_utils import load_and_validate

    load_and_validate(DEPLOY / "smoke" / "pyproject.toml")


def _compose() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _args(svc: dict) -> list[str]:
    return [str(a) for a in svc.get("command", [])]


def test_compose_references_existing_files():
    compose = _compose()
    services = compose["services"]
    for name, svc in services.items():
        if "build" in svc:
            ctx = (DEPLOY / svc["build"]["context"]).resolve()
            assert ctx == ROOT, name
            dockerfile = ctx / svc["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            assert (dockerfile.parent / f"{dockerfile.name}.dockerignore").is_file()
    # Secrets are the files deploy/certs.py writes, under the directory the README tells operators to use.
    names = {certs.CA_CERT, certs.SERVER_CERT, certs.SERVER_KEY}
    for sec in compose["secrets"].values():
        p = Path(sec["file"])
        assert p.parent == Path("certs") and p.name in names, sec
    for cfg in compose["configs"].values():
        assert (DEPLOY / cfg["file"]).is_file(), cfg
    # The app the CLI service submits exists in the image at the path the README uses.
    assert (DEPLOY / "app" / "pyproject.toml").is_file()


def test_dockerfiles_copy_existing_paths():
    for df in ("Dockerfile.node", "Dockerfile.coordinator"):
        for line in (DEPLOY / df).read_text().splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (ROOT / src).exists(), f"{df}: COPY {src} does not exist"
                    secret_dirs = {"certs", "keys", "nodes", "bundles"} & set(Path(src).parts)
                    assert not secret_dirs, f"{df} copies operator secrets: {line}"


def test_dockerfiles_copy_every_package():
    """Every top-level package pyproject.toml installs is copied into both images (and let through
    their .dockerignore), so `pip install .` in the image installs the whole tree."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include} - {"deploy"}  # deploy/ is copied file by file
    for df in ("Dockerfile.node", "Dockerfile.coordinator"):
        copied = {line.split()[1] for line in (DEPLOY / df).read_text().splitlines() if line.startswith("COPY ")}
        allowed = set((DEPLOY / f"{df}.dockerignore").read_text().splitlines())
        for pkg in packages:
            assert pkg in copied, f"{df} does not COPY {pkg}/"
            assert f"!{pkg}/**" in allowed, f"{df}.dockerignore does not let {pkg}/ through"


def test_compose_security_flags():
    compose = _compose()
    services = compose["services"]
    link = _args(services["superlink"])
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth",
                 "--disable-runtime-dependency-installation"):
        assert flag in link, flag
    assert "--insecure" not in link
    supernodes = [s for n, s in services.items() if n.startswith("supernode")]
    assert len(supernodes) >= 3
    for svc in supernodes:
        args = _args(svc)
        assert "--insecure" not in args
        assert args[args.index("--root-certificates") + 1] == "/run/secrets/ca.crt"
        key = args[args.index("--auth-supernode-private-key") + 1]
        mounts = [v.rsplit(":", 1)[1] for v in svc["volumes"]]
        assert any(key.startswith(m + "/") for m in mounts), (key, mounts)
        assert args[args.index("--node-config") + 1] == 'node-dir="/srv/node"'
        assert svc["secrets"] == ["ca.crt"], "a SuperNode gets the CA certificate only"
    for name, svc in services.items():
        assert str(svc["environment"]["FLWR_TELEMETRY_ENABLED"]) == "0", name
