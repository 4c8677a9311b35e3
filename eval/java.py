"""Find a Java runtime for the METEOR and PTB-tokenizer jars, and run them with a safe locale.

pycocoevalcap's METEOR and Stanford PTB tokenizer are Java programs. Two things go wrong in practice:
no `java` on PATH (containers, CI), and a POSIX/ASCII locale that makes the JVM mangle non-ASCII
bytes. Detection here is explicit and cheap (one `java -version`), and every subprocess gets a
UTF-8 locale, so callers can skip Java metrics with a warning instead of crashing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JavaInfo:
    """What `detect_java` found.

    Attributes:
        executable: Absolute path of `java`, or None when no usable Java was found.
        version: The quoted version from `java -version` (e.g. "17.0.15"), or None.
        env: Environment for Java subprocesses: the current one plus a UTF-8 locale.
        problem: Why Java is unusable (None when it is usable); shown in metric warnings.
    """

    executable: str | None
    version: str | None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    problem: str | None = None

    @property
    def available(self) -> bool:
        return self.executable is not None


def utf8_locale_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return a copy of `base` (default: os.environ) with a UTF-8 locale for child processes.

    en_US.UTF-8 is preferred because METEOR's normaliser was written against it; C.UTF-8 (present
    in every modern glibc) is the fallback when en_US is not generated on this machine.
    """
    env = dict(os.environ if base is None else base)
    env["LC_ALL"] = "en_US.UTF-8" if _has_locale("en_US.utf8") else "C.UTF-8"
    env["LANG"] = env["LC_ALL"]
    return env


def _has_locale(name: str) -> bool:
    if shutil.which("locale") is None:
        return False
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    wanted = name.lower().replace("-", "")
    return any(line.strip().lower().replace("-", "") == wanted for line in out.splitlines())


def detect_java(path: str | None = None) -> JavaInfo:
    """Look for a working `java` on `path` (default: $PATH) and read its version.

    Never raises: a missing or broken Java is reported in `JavaInfo.problem`.
    """
    exe = shutil.which("java", path=path)
    if exe is None:
        return JavaInfo(None, None, {}, "java not found on PATH (install a JRE >= 8, e.g. apt-get install default-jre)")
    env = utf8_locale_env()
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return JavaInfo(None, None, {}, f"`java -version` failed: {exc}")
    if proc.returncode != 0:
        return JavaInfo(None, None, {}, f"`java -version` exited with {proc.returncode}")
    # `java -version` writes to stderr.
    match = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
    return JavaInfo(exe, match.group(1) if match else "unknown", env, None)
