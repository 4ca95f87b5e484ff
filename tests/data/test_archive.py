import stat
import zipfile
from pathlib import Path

import pytest

from ltxtune.errors import ErrorKind
from ltxtune.data import DatasetError, prepare_dataset
from ltxtune.data.archive import ArchiveLimits, extract_archive
from tests.data.conftest import tiny_plan
from tests.data.media import make_video, make_zip


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def hostile(tmp_path: Path, build) -> Path:
    path = tmp_path / "upload" / "hostile.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok/clip.txt", "fine")
        build(archive)
    return path


def refuse(tmp_path: Path, zip_path: Path) -> DatasetError:
    """Prepare `zip_path` in tmp_path/job; check it was refused and nothing was written outside."""
    before = tree(tmp_path)
    with pytest.raises(DatasetError) as caught:
        prepare_dataset(tiny_plan(zip_path), tmp_path / "job", allow_local_files=True)
    outside = {p for p in tree(tmp_path) - before if not p.startswith("job")}
    assert outside == set()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/ltxtune-evil.txt").exists()
    assert not (tmp_path / "job" / "extracted").exists()  # cleaned up
    return caught.value


def test_path_escape_with_dotdot(tmp_path):
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr("../../evil.txt", "x")))
    assert error.message == "Refused archive: entry '../../evil.txt' points outside the archive ('..')"
    assert error.kind is ErrorKind.CONTENT


def test_path_escape_hidden_in_a_folder_and_backslashes(tmp_path):
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr("clips\\..\\..\\evil.txt", "x")))
    assert "points outside the archive" in error.message


@pytest.mark.parametrize("name", ["/tmp/ltxtune-evil.txt", "C:/evil.txt", "C:\\evil.txt"])
def test_absolute_paths(tmp_path, name):
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr(name, "x")))
    assert error.message == f"Refused archive: entry {name!r} has an absolute path"


def test_symlink(tmp_path):
    def build(archive):
        info = zipfile.ZipInfo("clips/link.mp4")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")

    error = refuse(tmp_path, hostile(tmp_path, build))
    assert error.message == "Refused archive: entry 'clips/link.mp4' is a symbolic link"


def mark_encrypted(path: Path, name: str) -> None:
    """Set the 'encrypted' flag of `name` in its local and central headers (zipfile cannot write
    encrypted entries; this is what a password-protected archive's headers say)."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_at : start + name_at + len(encoded)] == encoded:
                data[start + flags_at] |= 0x1
            start += 4
    path.write_bytes(bytes(data))


def test_encrypted_entry(tmp_path):
    path = hostile(tmp_path, lambda z: z.writestr("clips/secret.mp4", b"\x00" * 100))
    mark_encrypted(path, "clips/secret.mp4")
    error = refuse(tmp_path, path)
    assert error.message == (
        "Refused archive: entry 'clips/secret.mp4' is encrypted; upload an archive without a password"
    )


def test_zip_bomb_by_ratio(tmp_path):
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr("clips/bomb.mp4", bytes(20 * 2**20))))
    assert error.message.startswith("Refused archive: entry 'clips/bomb.mp4' expands ")
    assert error.message.endswith("times (limit 200); this looks like a zip bomb")


def test_zip_bomb_by_total_size_and_count(tmp_path):
    path = hostile(tmp_path, lambda z: [z.writestr(f"clips/{i}.txt", "x" * 100) for i in range(20)])
    with pytest.raises(DatasetError, match=r"Refused archive: 21 entries, more than the 10 allowed"):
        extract_archive(path, tmp_path / "x", limits=ArchiveLimits(max_files=10))
    with pytest.raises(DatasetError, match=r"Refused archive: 2.0 KiB uncompressed, more than the 1000 bytes allowed"):
        extract_archive(path, tmp_path / "x", limits=ArchiveLimits(max_total_bytes=1000))
    assert not (tmp_path / "x").exists()


def test_header_that_understates_the_size_cannot_write_more(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"clips/a.txt": "x" * 5000})
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("clips/a.txt")
    info.file_size = 10  # what a forged header would claim
    from ltxtune.data.archive import _write_entry

    with zipfile.ZipFile(path) as archive, pytest.raises(DatasetError):
        _write_entry(archive, info, tmp_path / "out.txt")


def test_same_path_twice(tmp_path):
    def build(archive):
        archive.writestr("clips/a.txt", "one")
        archive.writestr("clips/./a.txt", "two")

    error = refuse(tmp_path, hostile(tmp_path, build))
    assert error.message == "Refused archive: 'clips/a.txt' appears twice"


def test_not_a_zip_and_empty_zip(tmp_path):
    bad = tmp_path / "upload" / "bad.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a zip archive at all")
    error = refuse(tmp_path, bad)
    assert error.kind is ErrorKind.SOURCE
    assert error.message == (
        "training_data_url is not a zip archive (32 bytes starting with b'this is not a zi'); upload a .zip of your clips"
    )
    empty = make_zip(tmp_path / "upload" / "empty.zip", {})
    error = refuse(tmp_path, empty)
    assert error.kind is ErrorKind.CONTENT
    assert error.message == (
        "The archive contains no training media: add videos (.mp4, .mov, .avi, .mkv) "
        "or images (.png, .jpg, .jpeg), with optional .txt captions"
    )


def test_junk_is_ignored_and_duplicate_names_stay_distinct(tmp_path):
    clip = make_video(tmp_path / "m" / "c.mp4", 64, 64, frames=9, audio=False)
    path = make_zip(
        tmp_path / "a.zip",
        {
            "set/a/clip.mp4": clip,
            "set/a/clip.txt": "first",
            "set/b/clip.mp4": clip,
            "set/b/clip.txt": "second",
            "__MACOSX/set/a/._clip.mp4": b"\x00\x05\x16\x07",
            "set/a/._clip.mp4": b"\x00\x05\x16\x07",
            "set/.DS_Store": b"junk",
            "set/notes.pdf": b"%PDF",
        },
    )
    extracted = extract_archive(path, tmp_path / "out", wanted={".mp4", ".txt"})
    assert sorted(extracted.files) == ["set/a/clip.mp4", "set/a/clip.txt", "set/b/clip.mp4", "set/b/clip.txt"]
    assert extracted.ignored == ["set/notes.pdf"]
    assert tree(tmp_path / "out") == {
        "set",
        "set/a",
        "set/b",
        "set/a/clip.mp4",
        "set/a/clip.txt",
        "set/b/clip.mp4",
        "set/b/clip.txt",
    }


@pytest.mark.parametrize("order", ["file first", "folder first"])
def test_a_file_and_a_folder_of_the_same_name(tmp_path, order):
    def build(z):
        entries = [("clips/a.mp4", b"file"), ("clips/a.mp4/b.mp4", b"inside")]
        for name, data in entries if order == "file first" else entries[::-1]:
            z.writestr(name, data)

    error = refuse(tmp_path, hostile(tmp_path, build))
    assert str(error) == "Refused archive: 'clips/a.mp4' is both a file and a folder"
    assert error.kind is ErrorKind.CONTENT and str(tmp_path) not in str(error)


def test_over_long_entry_names_are_refused_without_the_whole_path(tmp_path):
    long_part = "x" * 300 + ".mp4"
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr(f"clips/{long_part}", b"v")))
    assert "has a name longer than 255 bytes" in str(error) and "(310 characters)" in str(error)
    assert long_part not in str(error) and str(tmp_path) not in str(error)
    deep = "/".join(["d" * 200] * 8) + "/a.mp4"
    error = refuse(tmp_path, hostile(tmp_path, lambda z: z.writestr(deep, b"v")))
    assert "has a path longer than 1024 characters" in str(error) and deep not in str(error)
