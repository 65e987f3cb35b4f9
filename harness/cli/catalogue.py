"""What is here: `scenarios`, `libs`, `probe`."""
from __future__ import annotations

import json
import sys

from harness.cli.common import writable_file
from harness.verdicts import EXIT_USAGE


def cmd_probe(ns, argv) -> int:
    from harness.control import probe
    try:
        rows = probe.run(ns.lib or None)
    except probe.ProbeError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if ns.json:
        print(json.dumps(rows, indent=2))
    else:
        print(probe.table(rows))
    if ns.markdown:
        try:
            with open(ns.markdown, "w") as f:
                f.write(probe.markdown(rows))
        except OSError as e:
            print(f"tlsharness: error: --markdown {ns.markdown}: {e.strerror or e}", file=sys.stderr)
            return EXIT_USAGE
    return 0 if all("error" not in r for r in rows) else 1


def cmd_scenarios(ns, argv) -> int:
    from harness.spec import scenario
    rows = scenario.catalogue()
    width = max((len(s.name) for s in rows), default=10)
    for s in rows:
        refs = f"  [{', '.join(s.refs)}]" if s.refs else ""
        print(f"{s.name:{width}}  {s.summary}{refs}")
        if s.notes:
            print(f"{'':{width}}    note: {s.notes}")
    return 1 if any(s.summary.startswith("BROKEN") for s in rows) else 0


def cmd_libs(ns, argv) -> int:
    from harness.builds import backends
    if ns.action in ("add", "build"):
        from harness.builds import userlibs
        source = ns.prefix if ns.action == "add" else ns.from_source
        if not (ns.name and source):
            print("tlsharness: error: " + ("libs add NAME --prefix PATH [--kind openssl]"
                  if ns.action == "add" else
                  "libs build NAME --kind KIND --from-source TARBALL_OR_DIR"), file=sys.stderr)
            return EXIT_USAGE
        make = userlibs.add if ns.action == "add" else userlibs.build
        try:
            print(f"built {make(ns.name, source, ns.kind)}: use --lib {ns.name}")
        except userlibs.UserLibError as e:
            print(f"tlsharness: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        return 0
    avail = backends.availability()
    w = max([16] + [len(n) + 1 for n in avail])
    print(f"{'library':{w}} {'state':8} {'version':22} where")
    versions = []
    for name, (built, reason) in avail.items():
        inf = backends.info(name)
        where = inf.get("prefix") or ("system" if built else reason)
        ver = inf.get("version", "") or ("" if built else "-")
        versions.append(f"{name} {inf.get('caps', {}).get('version', '')}".lower())
        print(f"{name:{w}} {'built' if built else 'missing':8} {ver:22} {where}")
    if not any("libressl" in v for v in versions):
        print(f"{'libressl':{w}} {'no recipe':8} {'-':22} in no Debian suite on the mirror: on a "
              "machine with internet access, tlsharness libs build libressl --kind openssl "
              "--from-source libressl-X.Y.Z.tar.gz")
    from harness.builds import native
    if not native.build_report():
        print("no native extension is built here: in a checkout of tlsharness, run `make setup` "
              "(Debian packages, then `python -m native_shim.build`)")
    return 0


def add_parsers(sub) -> None:
    sc = sub.add_parser("scenarios", help="list the scenario catalogue")
    sc.set_defaults(fn=cmd_scenarios)
    pr = sub.add_parser("probe", help="measure each library's hooks and thread-local state")
    pr.add_argument("--lib", action="append", help="library to probe (repeatable; default all built)")
    pr.add_argument("--json", action="store_true", help="print the rows as JSON")
    pr.add_argument("--markdown", metavar="FILE", type=writable_file,
                    help="also write the table as Markdown")
    pr.set_defaults(fn=cmd_probe)
    lb = sub.add_parser("libs", help="list the TLS libraries built here; 'libs add' your own build")
    lb.add_argument("action", nargs="?", choices=["list", "add", "build"], default="list",
                    help="list (default) | add NAME --prefix PATH | build NAME --kind KIND "
                         "--from-source TARBALL_OR_DIR")
    lb.add_argument("name", nargs="?", help="add/build: the name to give the build (then --lib NAME)")
    lb.add_argument("--prefix", help="add: the install prefix (include/ and lib/)")
    lb.add_argument("--kind", default="openssl", choices=["openssl", "wolfssl", "mbedtls", "gnutls"],
                    help="add/build: the adapter kind (default openssl; LibreSSL and BoringSSL "
                         "are openssl)")
    lb.add_argument("--from-source", metavar="TARBALL_OR_DIR",
                    help="build: a source tree or tarball, built with the options a multi-process "
                         "server needs (the recipe of its kind in native_shim/variants.toml)")
    lb.set_defaults(fn=cmd_libs)
