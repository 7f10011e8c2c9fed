#!/usr/bin/env python3
"""Checks that scratchcrypt(8) documents what the binary's help says.

usage: check_manpage.py BINARY MANPAGE [CONFFILE]

For every command listed by `BINARY help`: the command and its one-line summary
appear in the rendered man page, and so does every option its `--help` lists.
Every setting `BINARY config` prints appears in the man page (and in CONFFILE, the
shipped default configuration, with its default value). Prints one PASS/FAIL line
per check; exits 1 if any failed.
"""
import gzip
import re
import subprocess
import sys


def run(*args, env=None):
    return subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout


def render(manpage):
    data = open(manpage, "rb").read()
    if manpage.endswith(".gz"):
        data = gzip.decompress(data)
    # -Tascii turns \- into '-', -P-cbou drops overstrike; .nh in the page keeps
    # words whole. Joining lines undoes filling, so phrases can be searched.
    out = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou"], input=data, check=True,
                         capture_output=True).stdout.decode("ascii", "replace")
    return " ".join(out.split())


def norm(text):
    return " ".join(text.replace("`", "").split()).rstrip(".")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    binary, manpage = sys.argv[1], sys.argv[2]
    conffile = sys.argv[3] if len(sys.argv) == 4 else None
    man = render(manpage)
    failed = 0

    def check(ok, what):
        nonlocal failed
        print(("PASS: " if ok else "FAIL: ") + what)
        failed += not ok

    overview = run(binary, "help")
    commands = re.findall(r"^  ([a-z]+) +(\S.*)$", overview, re.M)
    check(len(commands) >= 8, f"`scratchcrypt help` lists {len(commands)} commands")
    words = set(re.findall(r"(?<![\w-])(-{1,2}[a-z][a-z-]*)", man))
    for name, summary in commands:
        check(f"scratchcrypt {name}" in man, f"man page has a section for '{name}'")
        check(norm(summary) in man, f"man page has the summary of '{name}': {norm(summary)!r}")
        text = run(binary, name, "--help")
        options = re.findall(r"^  (-{1,2}[a-z][a-z-]*)", text, re.M)
        check(bool(options), f"'{name} --help' lists options")
        for option in options:
            check(option in words, f"man page documents '{name} {option}'")
    check("--version" in words, "man page documents --version")

    env = {"SCRATCHCRYPT_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin"}
    settings = re.findall(r"^(\w+) =(?: (.*))?$", run(binary, "config", env=env), re.M)
    check(len(settings) >= 7, f"`scratchcrypt config` prints {len(settings)} settings")
    shipped = open(conffile).read() if conffile else None
    for key, default in settings:
        line = f"{key} = {default}" if default else f"{key} ="  # empty: not set
        check(line in man, f"man page documents setting {line}")
        if shipped is not None:
            check(re.search(rf"^{re.escape(line)}$", shipped, re.M) is not None,
                  f"default config sets {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
