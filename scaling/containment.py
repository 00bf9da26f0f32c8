"""Containment: nothing outside the root a user named is ever written, deleted or followed.

The one rule, and where it is enforced:
- A root is what the user named (`--out`, the staging root SCALING_STAGING) or a trial directory.
  Every directory the platform makes or deletes below a root (a sweep directory, a bucket's
  mirror, a staged copy) must resolve inside that root (`within`), checked before any write.
- A bucket URL's path is taken apart into plain names (`url_parts`): no `..`, `.` or empty
  segment, so a URL can never climb out of the mirror it is kept in.
- Inside a trial directory (and a sweep's analysis/) nothing is written through a link. The trial
  directory itself being a link is refused (`refuse_link`); a symbolic link, special file or hard link
  planted in it (checkpoints, summary.json, metrics.jsonl, attempts.jsonl, tensorboard/, the claim) is
  moved aside as `<name>.damaged-<UTC time>` before an attempt (or `analysis plot`) writes anything
  (`move_aside`). The files the platform's own writers open (metrics, attempts, every atomic JSON or
  YAML write) also refuse, at open, a link, a special file or a hard link planted while it runs
  (`open_append`, `open_new`); what libraries write there (orbax, TensorBoard, plots) relies on the
  move-aside before it.
"""
import errno
import os
import stat
import time

MAX_WALKED = 100_000  # entries of a run directory looked at for links: a run holds hundreds


class Escape(ValueError):
  """A path or URL that would leave its root, or a link where none may be: one line, which and why."""


def within(root: str, path: str) -> str:
  """`path` resolved (every link in it followed); Escape if that lies outside `root` resolved."""
  real, real_root = os.path.realpath(path), os.path.realpath(root)
  if real != real_root and os.path.commonpath([real, real_root]) != real_root:
    raise Escape(f"{path}: resolves to {real}, outside {root}; nothing outside it is written or deleted")
  return real


def url_parts(url: str) -> tuple:
  """(scheme, [name, ...]) of a URL's path; Escape if a segment is empty, `.` or `..` or holds a backslash or NUL.

  `file:///a/b`, `memory://a/b` and `gs://bucket/a/b/` all give plain names; `file:///../x` is refused.
  """
  scheme, rest = url.split("://", 1)
  names = rest.split("/")
  while names and names[0] == "":  # file:///a: the path's leading slash
    names.pop(0)
  if names and names[-1] == "":  # a trailing slash
    names.pop()
  for name in names:
    if name in ("", ".", "..") or "\\" in name or "\0" in name:
      shown = "an empty segment" if name == "" else repr(name)
      raise Escape(f"{url}: {shown} in the path; a URL names its directory plainly (no '..', '.' or '//')")
  if not names:
    raise Escape(f"{url}: no path; name a directory (e.g. {scheme}://bucket/runs)")
  return scheme, names


def refuse_link(path: str, what: str = "a run directory") -> None:
  """Escape if `path` is a symbolic link: the platform never writes through one."""
  if os.path.islink(path):
    raise Escape(f"{path}: a symbolic link (to {_target(path)}); {what} is never followed through a link: "
                 f"move it away and run again")


def move_aside(directory: str) -> list:
  """Renames everything below `directory` that a write could go through (not followed) to `<name>.damaged-<UTC
  time>` beside it: symbolic links, special files (a FIFO would block a writer, a device would take its bytes) and
  regular files with another name elsewhere (a hard link); not what is already so named. Returns (path, new name,
  what it was). Renaming moves the name, never what it points to."""
  moved, seen = [], 0
  for folder, dirs, files in os.walk(directory, followlinks=False):
    for name in dirs + files:
      seen += 1
      path = os.path.join(folder, name)
      what = unsafe(path)
      if what and ".damaged-" not in name:  # one moved aside before stays where it is
        aside = damaged_name(path)
        os.rename(path, aside)
        moved.append((path, aside, what))
    dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    if seen > MAX_WALKED:
      break
  return moved


def unsafe(path: str):
  """Why writing at `path` could reach something outside its directory (a few words), or None."""
  try:
    st = os.lstat(path)
  except FileNotFoundError:
    return None
  if stat.S_ISLNK(st.st_mode):
    return "a symbolic link"
  if stat.S_ISREG(st.st_mode):
    return f"a hard link (one of {st.st_nlink} names of one file)" if st.st_nlink > 1 else None
  return None if stat.S_ISDIR(st.st_mode) else "a special file (not a regular file or directory)"


def damaged_name(path: str, exists=os.path.lexists) -> str:
  """`<path>.damaged-<UTC timestamp>[-n]`: a name beside `path` that nothing holds yet (`exists`: how to tell, for a
  bucket path)."""
  stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
  aside, n = f"{path}.damaged-{stamp}", 1
  while exists(aside):
    aside, n = f"{path}.damaged-{stamp}-{n}", n + 1
  return aside


def open_append(path: str, binary: bool = False):
  """`path` opened to append (created if missing; binary: readable too, "a+b"), never through a link: OSError
  (ELOOP) names it."""
  fd = _open(path, (os.O_RDWR if binary else os.O_WRONLY) | os.O_APPEND | os.O_CREAT)
  return os.fdopen(fd, "a+b" if binary else "a")


def open_new(path: str):
  """`path` created or emptied for writing as text, never through a link (emptied only once it is known to be a
  regular file of one name: a hard link is refused before any byte of it changes)."""
  fd = _open(path, os.O_WRONLY | os.O_CREAT)
  os.ftruncate(fd, 0)
  return os.fdopen(fd, "w")


def _open(path: str, flags: int) -> int:
  """A descriptor for writing `path`: never through a symbolic link, never a special file (opened without blocking,
  so a FIFO cannot stall the writer), never a file with another name elsewhere; OSError naming it otherwise."""
  try:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise OSError(errno.ELOOP, f"a symbolic link (to {_target(path)}), never written through", path) from None
    if e.errno == errno.ENXIO:  # a FIFO nothing reads
      raise OSError(errno.ENXIO, "a special file (not a regular file), never written through", path) from None
    raise
  st = os.fstat(fd)
  if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
    os.close(fd)
    why = "a hard link (a file with another name), never written" if stat.S_ISREG(st.st_mode) else (
        "a special file (not a regular file), never written through")
    raise OSError(errno.EPERM, why, path)
  os.set_blocking(fd, True)
  return fd


def _target(path: str) -> str:
  try:
    return os.readlink(path)
  except OSError:
    return "?"
