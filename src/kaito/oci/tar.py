"""Unpacking tar layers safely: nothing lands outside the output directory, no devices, no links that escape."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

from kaito.oci.errors import OciError

_COPY_CHUNK = 1024 * 1024


def extract_tar(archive: Path, outdir: Path, *, subdir: str | None = None, source: str = "") -> list[Path]:
    """Unpack a (possibly gzipped) tar into outdir; refuses absolute paths, '..', links out of outdir, devices.

    With subdir, only entries under it are unpacked, relative to it. Whiteouts (.wh.*) are skipped.
    Returns the regular files written.
    """
    source = source or str(archive)
    root = Path(os.path.realpath(outdir))
    prefix = PurePosixPath(subdir.strip("/")) if subdir else None
    written: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                relative = _member_path(member.name, source)
                if relative.name.startswith(".wh."):
                    continue
                if prefix is not None:
                    stripped = _under(relative, prefix)
                    if stripped is None:
                        continue
                    relative = stripped
                if not relative.parts:
                    continue
                written.extend(_extract_member(tar, member, relative, root, prefix, source))
    except tarfile.TarError as exc:
        raise OciError(f"{source} is not a readable tar archive ({exc})") from exc
    except OSError as exc:
        raise OciError(f"cannot unpack {source} into {outdir}: {exc}") from exc
    return written


def _member_path(name: str, source: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise OciError(f"{source} holds an unsafe path {name!r} (absolute or with '..'); refusing to unpack it")
    return PurePosixPath(*[part for part in path.parts if part != "."])


def _under(path: PurePosixPath, prefix: PurePosixPath) -> PurePosixPath | None:
    if path.parts[: len(prefix.parts)] != prefix.parts:
        return None
    return PurePosixPath(*path.parts[len(prefix.parts) :])


def _inside(root: Path, path: str) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    relative: PurePosixPath,
    root: Path,
    prefix: PurePosixPath | None,
    source: str,
) -> list[Path]:
    target = root.joinpath(*relative.parts)
    if not _inside(root, str(target.parent)):
        raise OciError(f"{source}: {member.name!r} would be written through a link out of the output directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
        return []
    if member.isreg():
        _replace_link(target)
        extracted = tar.extractfile(member)
        if extracted is None:
            raise OciError(f"{source}: cannot read {member.name!r}")
        with extracted, target.open("wb") as out:
            while chunk := extracted.read(_COPY_CHUNK):
                out.write(chunk)
        target.chmod(0o755 if member.mode & 0o111 else 0o644)
        return [target]
    if member.issym():
        if member.linkname.startswith("/") or not _inside(root, os.path.join(target.parent, member.linkname)):
            raise OciError(
                f"{source}: symlink {member.name!r} -> {member.linkname!r} points out of the output directory"
            )
        _replace_link(target)
        target.symlink_to(member.linkname)
        return []
    if member.islnk():
        linked = _member_path(member.linkname, source)
        linked_relative = _under(linked, prefix) if prefix is not None else linked
        existing = root.joinpath(*linked_relative.parts) if linked_relative is not None else None
        if existing is None or not existing.is_file() or not _inside(root, str(existing)):
            raise OciError(
                f"{source}: hard link {member.name!r} -> {member.linkname!r} has no target inside the output"
            )
        _replace_link(target)
        os.link(existing, target)
        return [target]
    raise OciError(f"{source}: refusing {member.name!r}, a device, FIFO or other special file")


def _replace_link(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
