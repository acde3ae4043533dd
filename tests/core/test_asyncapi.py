"""``amb docs``: the AsyncAPI 3.0 document of an app, validated against the official AsyncAPI 3.0
JSON Schema (from the AsyncAPI project's ``@asyncapi/specs`` package on the npm registry, fetched
once and cached)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from amb_core.testing.servers import skip_or_fail

SPECS = "@asyncapi/specs@6"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "amb-tests" / "asyncapi"

APP = '''
import dataclasses

import pydantic
from amb_core import Message, MessageBus

bus = MessageBus.from_url("memory://", name="shop")


class Address(pydantic.BaseModel):
    city: str


class Order(pydantic.BaseModel):
    id: int
    ship_to: Address


@dataclasses.dataclass
class Receipt:
    order: int
    approved: bool


@bus.subscribe("orders.created", group="billing")
async def bill(order: Order, message: Message) -> Receipt:
    """Bill an order and answer with the receipt."""
    return Receipt(order=order.id, approved=True)


@bus.subscribe("audit.>")
async def audit(message: Message) -> None:
    return None
'''


@pytest.fixture(scope="module")
def asyncapi_schema() -> dict[str, Any]:
    target = CACHE / "3.0.0-without-$id.json"
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            skip_or_fail("npm is needed to fetch the AsyncAPI 3.0 JSON Schema")
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "pack", SPECS, "--silent", "--pack-destination", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            skip_or_fail(f"npm pack {SPECS} failed: {done.stderr.strip()[:300]}")
        tarball = CACHE / done.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            member = archive.getmember("package/schemas/3.0.0-without-$id.json")
            extracted = archive.extractfile(member)
            assert extracted is not None
            target.write_bytes(extracted.read())
    schema: dict[str, Any] = json.loads(target.read_text())
    return schema


def test_docs_writes_a_valid_asyncapi_3_document(
    tmp_path: Path, asyncapi_schema: dict[str, Any]
) -> None:
    (tmp_path / "shop_app.py").write_text(APP)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "amb_core.cli",
            "docs",
            "shop_app:bus",
            "--url",
            "redis://user:s3cret@broker.example:6379/0",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    jsonschema.Draft7Validator(asyncapi_schema).validate(document)

    assert "s3cret" not in done.stdout and "user" not in json.dumps(document["servers"])
    assert document["servers"]["main"]["host"] == "broker.example:6379"
    assert document["servers"]["main"]["protocol"] == "redis"
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == {"orders.created", "audit.>"}
    order = next(iter(channels["orders.created"]["messages"].values()))
    assert order["name"] == "Order"
    assert order["payload"]["properties"]["ship_to"] == {"$ref": "#/components/schemas/Address"}
    assert "Address" in document["components"]["schemas"]
    operations = list(document["operations"].values())
    bill = next(op for op in operations if op.get("x-amb-group") == "billing")
    assert bill["summary"] == "Bill an order and answer with the receipt."
    reply = document["components"]["messages"][bill["reply"]["messages"][0]["$ref"].split("/")[-1]]
    assert reply["name"] == "Receipt"
    assert reply["payload"] == {"$ref": "#/components/schemas/Receipt"}
    assert set(document["components"]["schemas"]["Receipt"]["properties"]) == {"order", "approved"}
    audit = next(op for op in operations if "reply" not in op and "x-amb-group" not in op)
    assert audit["action"] == "receive"


def test_docs_writes_yaml_to_a_file(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "shop_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "amb_core.cli", "docs", "shop_app:bus"]
    as_json = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    done = subprocess.run(
        [*command, "--yaml", "-o", "contract.yaml", "--title", "Shop", "--app-version", "2.1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((tmp_path / "contract.yaml").read_text())
    assert document["info"] == {
        **json.loads(as_json.stdout)["info"],
        "title": "Shop",
        "version": "2.1",
    }
    assert document["channels"] == json.loads(as_json.stdout)["channels"]
