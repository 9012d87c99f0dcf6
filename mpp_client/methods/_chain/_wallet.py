""":class:`EthWallet`: what the ``evm`` and ``tempo`` wallets share.

One secp256k1 key on eip155 chains: the key behind the signer seam, and in a
Web3 Secret Storage keystore; the key's address and ``did:pkh`` per chain, the
chains it pays on, the payee and split-recipient allowlists, the asset lookup
and the refusal to be pickled. Each rail's wallet subclasses it
and adds its own terms and credentials.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NoReturn, Self

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from ..._exceptions import ChallengeError, KeystoreError
from ...identity import read_keystore, write_keystore
from ...money import BUILTIN_ASSETS, AssetEntry, AssetRegistry
from .._base import PaymentMethod
from ._addresses import ZERO_ADDRESS, did_pkh, same_address
from ._signing import DigestSigner, LocalSigner, as_signer

__all__ = ["EthWallet"]


class EthWallet(PaymentMethod):
    """A wallet with one secp256k1 key that pays on eip155 chains.

    Holds the key through a :class:`~._signing.DigestSigner` (a hex key, 32
    bytes, a ``LocalAccount`` or any object with ``address`` and
    ``sign_digest``; never shown: not in ``repr()``, and the wallet refuses to
    be pickled), the asset registry and the payee and split-recipient
    allowlists. Its quotes name the payer as its ``did:pkh`` on the
    challenge's chain (:meth:`source_for`).
    """

    #: How errors name the key (``"an EVM private key"``).
    key_label: ClassVar[str] = "a private key"

    def __init__(
        self,
        key: LocalAccount | DigestSigner | str | bytes,
        *,
        assets: AssetRegistry | Iterable[AssetEntry] | None,
        payees: Iterable[str] | None,
        split_recipients: Iterable[str] | Literal["*"],
        clock: Callable[[], datetime] | None,
    ) -> None:
        self._signer = as_signer(key, self.key_label)
        if isinstance(assets, AssetRegistry):
            self.assets = assets
        else:
            self.assets = AssetRegistry(BUILTIN_ASSETS if assets is None else assets)
        self.payees = None if payees is None else frozenset(p.lower() for p in payees)
        if split_recipients == "*":
            self._split_recipients: frozenset[str] | None = None
        else:
            self._split_recipients = frozenset(r.lower() for r in split_recipients)
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- identity -----------------------------------------------------------------

    @property
    def address(self) -> str:
        """The payer's EIP-55 address."""
        return str(to_checksum_address(self._signer.address))

    @property
    def signer(self) -> DigestSigner:
        """The seam every signature of this wallet goes through (see :mod:`._signing`).

        A :class:`~._signing.LocalSigner` for a hex key, bytes or a
        ``LocalAccount``; the object handed in otherwise. Its ``location``
        and ``hardware`` attributes, when it has them, say where the key lives.
        """
        return self._signer

    def source_for(self, chain_id: int) -> str:
        """The payer's ``did:pkh`` on ``chain_id``."""
        return did_pkh(chain_id, self.address)

    # -- the key in a keystore ------------------------------------------------------

    @classmethod
    def from_keystore(cls, path: str | os.PathLike[str], passphrase: str, **options: Any) -> Self:
        """A wallet whose key is read from a Web3 Secret Storage (v3) JSON keystore.

        The format geth, Foundry (``cast wallet``) and eth-account write.
        :class:`~mpp_client.KeystoreError` when the file cannot be read, is
        accessible by group or others, or the passphrase is wrong.
        """
        if not isinstance(passphrase, str):
            raise TypeError("passphrase must be a str")
        name = repr(os.fspath(path))
        raw = read_keystore(path, 64 * 1024)
        try:
            document = json.loads(raw)
        except ValueError:
            raise KeystoreError(f"keystore {name} is not JSON") from None
        if not isinstance(document, dict) or document.get("version") != 3:
            raise KeystoreError(f"keystore {name} is not a Web3 Secret Storage v3 keystore")
        try:
            secret = Account.decrypt(document, passphrase)
        except ValueError:
            raise KeystoreError(
                f"cannot decrypt keystore {name}: wrong passphrase, or the file was altered"
            ) from None
        except Exception:
            raise KeystoreError(f"keystore {name} is malformed") from None
        return cls(bytes(secret), **options)

    def save_keystore(
        self,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        overwrite: bool = False,
        iterations: int | None = None,
    ) -> None:
        """Write the key as an encrypted Web3 Secret Storage keystore (scrypt, mode 0600)."""
        if not isinstance(passphrase, str) or not passphrase:
            raise ValueError("refusing to encrypt a key under an empty passphrase")
        if not isinstance(self._signer, LocalSigner):
            raise TypeError(
                "this wallet signs through an external signer: its key cannot be exported"
            )
        document = Account.encrypt(self._signer.account.key, passphrase, iterations=iterations)
        write_keystore(path, document, overwrite=overwrite)

    # -- checking -----------------------------------------------------------------

    def _pay_chain(
        self,
        requested: int | None,
        allowed: Iterable[int],
        *,
        default: int | None = None,
        hint: str = "",
    ) -> int:
        """The chain to pay ``requested`` on: one the wallet pays on, or ChallengeError.

        ``allowed`` are the wallet's chains; ``default`` is used when the
        challenge names none (no default: the challenge must name one).
        ``hint`` ends the refusal (how to configure another chain).
        """
        chains = sorted(set(allowed))
        if requested is None:
            if default is not None:
                return default
            raise ChallengeError(
                f"{self.name} charge names no chain id and the wallet has none configured "
                "(pass chain_id=; the drafts disagree on a default, so none is assumed)"
            )
        if requested not in chains:
            raise ChallengeError(
                f"{self.name} charge is on chain {requested}, which this wallet does not pay on "
                f"(it pays on chain {', '.join(map(str, chains))}{hint})"
            )
        return requested

    def _asset(self, currency: str, chain: int) -> AssetEntry:
        asset = self.assets.lookup(self.name, currency, chain)
        if asset is None:
            raise ChallengeError(
                f"token {currency} on chain {chain} is not in the wallet's asset registry"
            )
        return asset

    def _check_recipients(self, recipient: str, splits: Sequence[str]) -> None:
        """The recipient is an expected payee, and every split goes to an expected recipient.

        (The terms never name the zero address: :func:`chain_charge` refuses it.)
        """
        if self.payees is not None and recipient.lower() not in self.payees:
            raise ChallengeError(f"recipient {recipient} is not one of the expected payees")
        for index, split in enumerate(splits):
            if same_address(split, ZERO_ADDRESS) or (
                self._split_recipients is not None and split.lower() not in self._split_recipients
            ):
                raise ChallengeError(
                    f"split {index} pays {split}, who is not an expected split recipient"
                )

    # -- hygiene ------------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled: that would write its key in the clear"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __getstate__(self) -> NoReturn:
        self.__reduce_ex__(None)
