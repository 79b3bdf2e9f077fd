"""Dashboard accounts from the command line, for a technician or an administrator on the server:
`gatescan user add|passwd|email|disable|enable|sites|list` and
`gatescan token create|sites|list|revoke`.

Passwords are never arguments (they would be in the shell history and in `ps`): asked twice on a
terminal, else the first line of stdin. Listings never show a password hash, a token or its
digest. Times are shown in this machine's local time zone, with their offset.

Every change is written to the audit log (action "account", actor "cli:" and the login name
of whoever ran the command, subject the user or token).

Sites: `--site S` (repeatable) gives a viewer, manager or tracer its role on those sites only;
without it the role holds on every site (one site needs no names). An admin holds every site and
a metrics token none: naming sites for them is refused. `user sites NAME` / `token sites NAME`
change them later: `--site S` (repeatable) replaces them, `--add S` / `--remove S` change them,
`--every-site` gives every site; a running dashboard applies the change at the account's next
request. Removing the last site is refused (no sites means every site: say `--every-site`).

E-mail: `--email ADDR` on `user add`, or `gatescan user email NAME ADDR` (`--none` to remove it)
later: the alerts of the sites a manager holds are mailed there (alerts.toml's [managers]).

Exit codes: 0 done; 2 bad input (a taken or malformed name, a short password, a missing
database file); 3 no such user or token.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_NO_SUCH,
    Commands,
    add_config_option,
    add_db_option,
    no_database,
)

if TYPE_CHECKING:
    from server.accounts.users import Accounts

ROLES = ("viewer", "manager", "admin", "tracer")  # tracer: contact tracing across its sites
TOKEN_ROLES = (*ROLES, "metrics")  # metrics: a token that reads /metrics only

Change = dict[str, object]  # what an action changed, for its audit row


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="dashboard users")
    users = user.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = _action(users, "add", "add a user (password: asked for, or one line of stdin)", run_add)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--language", choices=["vi", "en"], help="default: the site's")
    _add_site_option(add)
    add.add_argument("--email", metavar="ADDR", help="where the alerts of the user's sites go")
    email = _action(users, "email", "set or remove the address alerts are mailed to", run_email)
    address = email.add_mutually_exclusive_group(required=True)
    address.add_argument("address", nargs="?", metavar="ADDR")
    address.add_argument("--none", action="store_true", help="remove the address")
    _action(users, "passwd", "set a user's password and end their sessions", run_passwd)
    _action(users, "disable", "stop a user logging in and end their sessions", run_disable)
    _sites_action(users, "user")
    _action(users, "enable", "let a disabled user log in again", run_enable)
    _action(users, "list", "users: role, status, last login (no hashes)", run_list, named=False)

    token = commands.add_parser("token", help="API tokens for scripts (Authorization: Bearer)")
    tokens = token.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = _action(tokens, "create", "create a token and print it once", run_token_create)
    create.add_argument("--role", required=True, choices=TOKEN_ROLES)
    _add_site_option(create)
    _sites_action(tokens, "token")
    _action(tokens, "list", "tokens: role, created, last used (never the token)", run_tokens, False)
    _action(tokens, "revoke", "revoke a token: it opens nothing from now on", run_token_revoke)


def _add_site_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="SITE",
        dest="sites",
        help="a site the role holds on (repeat for more); none: every site (not for admin)",
    )


def _sites_action(actions: Commands[argparse.ArgumentParser], kind: str) -> None:
    sites = _action(
        actions,
        "sites",
        f"change the sites a {kind}'s role holds on (audited; applies at its next request)",
        run_sites,
    )
    sites.set_defaults(kind=kind)
    how = sites.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--site",
        action="append",
        metavar="SITE",
        dest="sites",
        help="hold these sites and no others (repeat for more)",
    )
    how.add_argument("--every-site", action="store_true", help="hold every site")
    how.add_argument("--add", action="append", metavar="SITE", help="hold this site too")
    how.add_argument("--remove", action="append", metavar="SITE", help="no longer hold this site")


def _action(
    actions: Commands[argparse.ArgumentParser],
    name: str,
    help: str,
    run: Callable[[argparse.Namespace], int],
    named: bool = True,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help, description=help)
    if named:
        parser.add_argument("name")
    add_db_option(parser)
    add_config_option(parser)
    parser.set_defaults(run=run, command=parser.prog)  # "gatescan user passwd", for messages
    return parser


# --- users -------------------------------------------------------------------------------------


def run_add(args: argparse.Namespace) -> int:
    from server.accounts.users import Role

    password = read_password()
    if password is None:
        return EXIT_BAD_INPUT

    def add(accounts: Accounts) -> Change:
        role = Role.parse(args.role)
        accounts.add_user(
            args.name,
            role,
            password,
            language=args.language,
            sites=args.sites,
            email=args.email,
        )
        _say(f"added user {args.name} ({args.role}; {_sites_text(args.sites)})")
        change: Change = {"change": "user add", "role": args.role, "sites": sorted(set(args.sites))}
        if args.email is not None:
            change["email"] = args.email
        return change

    return _with_accounts(args, add, new_database_ok=True)


def run_email(args: argparse.Namespace) -> int:
    def set_email(accounts: Accounts) -> Change:
        address = None if args.none else args.address
        accounts.set_email(args.name, address)
        _say(f"e-mail of {args.name}: {address or 'none'}")
        return {"change": "user email", "email": address}

    return _with_accounts(args, set_email)


def run_passwd(args: argparse.Namespace) -> int:
    def change(accounts: Accounts) -> Change:
        if accounts.user(args.name) is None:  # before asking for a password twice
            _no_such_user(args.name)
        password = read_password()
        if password is None:
            raise _Refused(EXIT_BAD_INPUT)
        ended = accounts.set_password(args.name, password)
        _say(f"password of {args.name} changed; {_sessions(ended)} ended")
        return {"change": "user passwd", "sessions_ended": ended}

    return _with_accounts(args, change)


def run_disable(args: argparse.Namespace) -> int:
    def disable(accounts: Accounts) -> Change:
        ended = accounts.set_disabled(args.name, True)
        _say(f"user {args.name} disabled; {_sessions(ended)} ended")
        return {"change": "user disable", "sessions_ended": ended}

    return _with_accounts(args, disable)


def run_enable(args: argparse.Namespace) -> int:
    def enable(accounts: Accounts) -> Change:
        accounts.set_disabled(args.name, False)
        _say(f"user {args.name} enabled")
        return {"change": "user enable"}

    return _with_accounts(args, enable)


def run_list(args: argparse.Namespace) -> int:
    def show(accounts: Accounts) -> Change | None:
        rows = [
            (
                user.name,
                user.role.label,
                _sites_text(user.sites),
                "disabled" if user.disabled else "enabled",
                local_time(user.last_login_at),
                local_time(user.created_at),
                user.email or "-",
            )
            for user in accounts.users()
        ]
        print_table(("NAME", "ROLE", "SITES", "STATUS", "LAST LOGIN", "CREATED", "EMAIL"), rows)
        return None

    return _with_accounts(args, show)


def run_sites(args: argparse.Namespace) -> int:
    """`user sites` and `token sites`: replace (`--site`, `--every-site`) or change (`--add`,
    `--remove`) the sites an account holds its role on (Accounts.set_sites)."""

    def change(accounts: Accounts) -> Change:
        before = _held(accounts, args.kind, args.name)
        if args.sites or args.every_site:
            now = accounts.set_sites(args.kind, args.name, args.sites or ())
        else:
            now = accounts.set_sites(
                args.kind, args.name, add=args.add or (), remove=args.remove or ()
            )
        _say(f"{args.kind} {args.name} now holds its role on {_sites_text(now)}")
        return {
            "change": f"{args.kind} sites",
            "before": None if before is None else sorted(before),
            "sites": None if now is None else sorted(now),  # None: every site
        }

    return _with_accounts(args, change)


def _held(accounts: Accounts, kind: str, name: str) -> frozenset[str] | None:
    """The sites a user or token holds now (None: every site, or no such name: set_sites says)."""
    if kind == "user":
        user = accounts.user(name)
        return None if user is None else user.sites
    token = next((token for token in accounts.tokens() if token.name == name), None)
    return None if token is None else token.sites


# --- tokens ------------------------------------------------------------------------------------


def run_token_create(args: argparse.Namespace) -> int:
    from server.accounts.users import Role

    def create(accounts: Accounts) -> Change:
        print(accounts.create_token(args.name, Role.parse(args.role), sites=args.sites))
        held = _sites_text(args.sites)
        _say(f"token {args.name} ({args.role}; {held}): shown once, keep it secret")
        return {"change": "token create", "role": args.role, "sites": sorted(set(args.sites))}

    return _with_accounts(args, create, new_database_ok=True)


def run_tokens(args: argparse.Namespace) -> int:
    def show(accounts: Accounts) -> Change | None:
        rows = [
            (
                token.name,
                token.role.label,
                _sites_text(token.sites),
                "revoked" if token.revoked else "active",
                local_time(token.created_at),
                local_time(token.last_used_at),
            )
            for token in accounts.tokens()
        ]
        print_table(("NAME", "ROLE", "SITES", "STATUS", "CREATED", "LAST USED"), rows)
        return None

    return _with_accounts(args, show)


def run_token_revoke(args: argparse.Namespace) -> int:
    from server.accounts.users import UnknownAccount

    def revoke(accounts: Accounts) -> Change:
        if not accounts.revoke_token(args.name):
            raise UnknownAccount(f"no token named {args.name!r}")
        _say(f"token {args.name} revoked")
        return {"change": "token revoke"}

    return _with_accounts(args, revoke)


# --- shared ------------------------------------------------------------------------------------


def _sites_text(sites: Collection[str] | None) -> str:
    """ "every site" for none named (or None), else the sites by name."""
    return ",".join(sorted(set(sites))) if sites else "every site"


class _Refused(Exception):
    """Stop the command with this exit code (the reason is already printed)."""

    def __init__(self, code: int) -> None:
        self.code = code


def _with_accounts(
    args: argparse.Namespace,
    work: Callable[[Accounts], Change | None],
    *,
    new_database_ok: bool = False,
) -> int:
    """Run `work` on the database's accounts and audit the change it reports; turn account
    errors into a message and an exit code. Only adding may create a database: any other action
    on a file that is not there is a typo."""
    from server.accounts.users import AccountError, Accounts, UnknownAccount
    from server.store.audit import AuditLog
    from server.store.database import Store

    if not new_database_ok and no_database(args.db, args.command):
        return EXIT_BAD_INPUT
    store = Store(args.db)
    try:
        change = work(Accounts(store.engine))
        if change is not None:
            AuditLog(store.engine).record(_actor(), "account", args.name, change)
    except _Refused as refused:
        return refused.code
    except UnknownAccount as exc:
        listing = args.command.rsplit(" ", 1)[0] + " list"  # "gatescan user list"
        print(f"{args.command}: {exc} (see: {listing})", file=sys.stderr)
        return EXIT_NO_SUCH
    except AccountError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        store.close()
    return 0


def _actor() -> str:
    """Who ran the command, as the audit log names them."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "cli"


def _no_such_user(name: str) -> None:
    from server.accounts.users import UnknownAccount

    raise UnknownAccount(f"no user named {name!r}")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _sessions(count: int) -> str:
    return f"{count} session" + ("" if count == 1 else "s")


def local_time(value: datetime | None) -> str:
    """This machine's local time with its offset, to the second; "never" for None."""
    if value is None:
        return "never"
    return value.astimezone().isoformat(sep=" ", timespec="seconds")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell: readable, and `awk '{print $1}'` still works."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def read_password() -> str | None:
    """From a prompt (asked twice) on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return None
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password", file=sys.stderr)
        return None
    return password
