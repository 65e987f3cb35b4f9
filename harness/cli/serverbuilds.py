"""`tlsharness servers`: the real servers built here (OpenSIPS from a
release tarball or its tag, Kamailio from a release tarball), listed, and built."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.verdicts import EXIT_USAGE


def cmd_servers(ns, argv) -> int:
    from harness.builds import opensips
    if ns.action == "build":
        return _build(ns)
    have = opensips.builds()
    if ns.json:
        from harness.builds import kamailio
        print(json.dumps(have + kamailio.builds(), indent=2))
        return 0
    if not _list_kamailio() and not have:
        print("no server builds yet: tlsharness servers build opensips --from-source "
              "opensips-3.6.8.tar.gz [--tls-lib wolfssl] [--no-pshared-override], or "
              "tlsharness servers build kamailio --from-source kamailio-6.1.4.tar.gz")
    if not have:
        return 0
    width = max(len(i["name"]) for i in have)
    for i in have:
        over = ("pshared override: " + (", ".join(i["pshared_override"]) or "none")
                if i["version"].startswith("3.") else "threaded TLS I/O, no override")
        print(f"{i['name']:<{width}}  OpenSIPS {i['version']}  tls_{i['tls_lib']} -> "
              f"{', '.join(Path(p).name for p in i.get('tls_links', []))}  {over}  "
              f"({i['seconds']:.0f} s)")
    return 0


def _build(ns) -> int:
    from harness.builds import opensips
    from harness.builds.safepath import BadName
    if ns.server == "kamailio":
        return _build_kamailio(ns)
    if ns.server != "opensips":
        print(f"tlsharness: error: servers build: opensips or kamailio (got {ns.server!r})",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        info = opensips.build(Path(ns.from_source) if ns.from_source else None,
                              tls_lib=ns.tls_lib, openssl=ns.openssl,
                              override=not ns.no_pshared_override, name=ns.name,
                              fetch_tag=ns.fetch,
                              wolfssl_source=Path(ns.wolfssl_source) if ns.wolfssl_source else None,
                              progress=lambda m: print(m, flush=True))
    except (opensips.OpensipsBuildError, BadName) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, BadName) or "give --from-source" in str(e) else 3
    except KeyboardInterrupt:
        print("tlsharness: interrupted: nothing was kept", file=sys.stderr)
        return 130
    print(f"built {info['name']} in {info['seconds']:.0f} s: {info['binary']}")
    print(f"  run it: tlsharness target opensips --opensips {info['name']}")
    return 0


def _build_kamailio(ns) -> int:
    from harness.builds import kamailio
    from harness.builds.safepath import BadName
    if ns.fetch or ns.wolfssl_source or ns.openssl or ns.no_pshared_override \
            or ns.tls_lib != "openssl":
        print("tlsharness: error: servers build kamailio takes --from-source and --name only",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        info = kamailio.build(Path(ns.from_source) if ns.from_source else None, name=ns.name,
                              progress=lambda m: print(m, flush=True))
    except (kamailio.KamailioBuildError, BadName) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, BadName) or "give --from-source" in str(e) else 3
    except KeyboardInterrupt:
        print("tlsharness: interrupted: nothing was kept", file=sys.stderr)
        return 130
    print(f"built {info['name']} (Kamailio {info['kamailio_version']}) in "
          f"{info['seconds']:.0f} s: {info['binary']}")
    print(f"  run it: tlsharness target kamailio --kamailio-build {info['name']}")
    return 0


def _list_kamailio() -> list[dict]:
    from harness.builds import kamailio
    have = kamailio.builds()
    for i in have:
        print(f"{i['name']}  Kamailio {i['kamailio_version']}  ({i.get('source')}, "
              f"{i.get('seconds') or 0:.0f} s)  --kamailio-build {i['name']}")
    return have


def add_parsers(sub) -> None:
    s = sub.add_parser("servers", help="real servers built here: list, or build opensips "
                       "from a release tarball")
    s.add_argument("action", nargs="?", choices=["list", "build"], default="list",
                   help="list (default) or build")
    s.add_argument("server", nargs="?", default="opensips", help="build: opensips (default) or kamailio")
    s.add_argument("--from-source", metavar="TARBALL_OR_DIR",
                   help="an OpenSIPS or Kamailio release tarball (e.g. opensips-3.6.8.tar.gz, "
                   "kamailio-6.1.4.tar.gz) or source tree")
    s.add_argument("--fetch", metavar="TAG", help="clone this tag of OpenSIPS's public "
                   "repository instead (needs network)")
    s.add_argument("--tls-lib", choices=["openssl", "wolfssl"], default="openssl",
                   help="the TLS module to build: tls_openssl (default) or tls_wolfssl")
    s.add_argument("--openssl", metavar="LIB", help="tls_openssl against this `tlsharness libs` "
                   "build (default: the system OpenSSL)")
    s.add_argument("--wolfssl-source", metavar="TARBALL_OR_DIR", help="tls_wolfssl: wolfSSL's "
                   "source (default: Debian's wolfssl 5.7 source package)")
    s.add_argument("--no-pshared-override", action="store_true", help="3.x: leave out "
                   "ssl_tweaks.h, OpenSIPS's process-shared pthread override (its lost "
                   "wake-up fix)")
    s.add_argument("--name", help="the build's name (default opensips-VERSION-LIB[-nooverride])")
    s.add_argument("--json", action="store_true", help="list: as JSON")
    s.set_defaults(fn=cmd_servers)
