"""Certificate store, TLS settings and mTLS decisions without sockets: uploads checked with Tyk's
messages, sealed private keys, the node mirror and its events, allowlist matching, CRLs, identities."""

from __future__ import annotations

import asyncio
import datetime
import hashlib

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.oas import decode_oas
from fastgate.apidef.spec import DefinitionError
from fastgate.auth import mtls
from fastgate.certs.bundle import (
    CertificateError, decode_stored, encode_stored, open_private_key, parse_bundle, seal_private_key,
)
from fastgate.certs.store import CertificateStore
from fastgate.config import config_from_mapping
from fastgate.pipeline.stage import Denial
from fastgate.certs.peer import PeerCertificate
from fastgate.server.tls import TlsError, openssl_ciphers, tls_version
from fastgate.store.memory import MemoryStore

NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca):
    return ca.issue_cert("client.example", common_name="client-one")


def pem(issued) -> bytes:
    return issued.cert_chain_pems[0].bytes()


def der_of(pem_bytes: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem_bytes).public_bytes(serialization.Encoding.DER)


# ---- uploads ----------------------------------------------------------------------------------


def test_bundle_id_is_the_sha256_of_the_leaf_and_a_matching_key_is_kept(leaf):
    bundle = parse_bundle(pem(leaf) + leaf.private_key_pem.bytes())
    assert bundle.fingerprint == hashlib.sha256(der_of(pem(leaf))).hexdigest()
    assert bundle.private_key_der and bundle.cert_ders == (der_of(pem(leaf)),)
    # Key first, then the certificate: the same bundle.
    assert parse_bundle(leaf.private_key_pem.bytes() + pem(leaf)).fingerprint == bundle.fingerprint


def test_bare_public_key_is_its_own_entry():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bundle = parse_bundle(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert bundle.fingerprint == hashlib.sha256(der).hexdigest() and bundle.public_key_der == der
    stored = decode_stored("org" + bundle.fingerprint, encode_stored(bundle))
    assert stored.is_public_key and stored.basics()["subject_cn"] == "Public Key: " + bundle.fingerprint
    assert stored.meta()["not_after"] == "0001-01-01T00:00:00Z"


def test_uploads_refused_with_tyks_messages(ca, leaf):
    other = ca.issue_cert("other.example")
    expired = ca.issue_cert("old.example", not_before=NOW - datetime.timedelta(days=9),
                            not_after=NOW - datetime.timedelta(days=1))
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    cases = {
        b"": "Failed to decode certificate. It should be PEM encoded.",
        b"hello": "Failed to decode certificate. It should be PEM encoded.",
        pem(expired): "certificate is expired",
        pem(leaf) + public: "Public keys can't be combined with certificates",
        pem(leaf) + leaf.private_key_pem.bytes() * 2: "Found multiple private keys",
        pem(other) + leaf.private_key_pem.bytes(): "tls: private key does not match public key",
        leaf.private_key_pem.bytes(): "Failed to decode certificate. It should be PEM encoded.",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n": "x509: malformed certificate",
    }
    for data, message in cases.items():
        with pytest.raises(CertificateError) as refused:
            parse_bundle(data)
        assert str(refused.value) == message


def test_private_keys_are_sealed_to_their_entry():
    key = b"pkcs8 der bytes of a private key"
    blob = seal_private_key(key, "s3cret", "org1abc")
    assert key not in blob
    assert open_private_key(blob, "s3cret", "org1abc") == key
    for secret, cert_id in (("wrong", "org1abc"), ("s3cret", "org2abc")):
        with pytest.raises(CertificateError):
            open_private_key(blob, secret, cert_id)
    assert seal_private_key(key, "s3cret", "org1abc") != blob  # fresh salt and nonce


def test_stored_entry_round_trip_and_tyk_shapes(ca, leaf):
    bundle = parse_bundle(pem(leaf) + ca.cert_pem.bytes() + leaf.private_key_pem.bytes())
    cert_id = "org1" + bundle.fingerprint
    stored = decode_stored(cert_id, encode_stored(bundle, seal_private_key(bundle.private_key_der, "k", cert_id)))
    assert stored.has_private and len(stored.chain) == 2 and not stored.is_ca
    basics = stored.basics()
    assert basics["id"] == cert_id and basics["subject_cn"] == "client-one" and basics["dns_names"] == ["client.example"]
    assert basics["not_after"].endswith("Z") and "T" in basics["not_after"]
    meta = stored.meta()
    assert meta["fingerprint"] == bundle.fingerprint and meta["subject"]["CommonName"] == "client-one"
    assert {"Type": [2, 5, 4, 3], "Value": "client-one"} in meta["subject"]["Names"]
    assert meta["subject"]["Country"] is None and meta["subject"]["ExtraNames"] is None
    root = decode_stored("r", encode_stored(parse_bundle(ca.cert_pem.bytes())))
    assert root.is_ca and root.meta()["is_ca"] is True and "dns_names" not in root.meta()


# ---- the store and its mirror -----------------------------------------------------------------


def test_store_add_list_delete_and_every_node_follows(ca, leaf):
    async def scenario():
        shared = MemoryStore()
        node_a, node_b = CertificateStore(shared, "secret"), CertificateStore(shared, "secret")
        await node_a.start()
        await node_b.start()
        changes = []
        node_b.on_change.append(lambda: changes.append(node_b.generation))
        cert_id = await node_a.add(pem(leaf) + leaf.private_key_pem.bytes(), "ab")
        other_id = await node_a.add(ca.cert_pem.bytes(), "a")
        with pytest.raises(CertificateError, match=f"Certificate with {cert_id} id already exists"):
            await node_a.add(pem(leaf), "ab")
        await asyncio.sleep(0.01)  # events reach the other node on the next loop iterations
        assert node_b.get(cert_id) is not None and node_b.get(other_id) is not None
        assert changes, "the other node's listeners ran"
        # An org's listing is that org's only, not every org sharing its prefix.
        assert await node_a.list_ids("a") == [other_id]
        assert await node_a.list_ids("ab") == [cert_id]
        assert sorted(await node_a.list_ids()) == sorted([cert_id, other_id])
        key = node_b.private_key(node_b.get(cert_id))
        assert key.public_key().public_numbers() == x509.load_pem_x509_certificate(pem(leaf)).public_key().public_numbers()
        assert await node_b.public_key_for(other_id) is not None
        assert await node_b.public_key_for("nope") is None
        await node_a.delete(cert_id)
        await asyncio.sleep(0.01)
        assert node_b.get(cert_id) is None and await node_b.fetch(cert_id) is None
        # A new node reads what is there at start.
        node_c = CertificateStore(shared, "secret")
        await node_c.start()
        assert [c.id for c in node_c.all()] == [other_id]
        for node in (node_a, node_b, node_c):
            await node.close()

    asyncio.run(scenario())


def test_private_key_needs_a_secret(leaf):
    async def scenario():
        store = CertificateStore(MemoryStore(), "")
        await store.start()
        with pytest.raises(CertificateError, match="private_certificate_encoding_secret"):
            await store.add(pem(leaf) + leaf.private_key_pem.bytes(), "")
        assert await store.add(pem(leaf), "") == hashlib.sha256(der_of(pem(leaf))).hexdigest()
        await store.close()

    asyncio.run(scenario())


# ---- TLS settings -----------------------------------------------------------------------------


def test_tls_versions_and_ciphers():
    import ssl

    assert tls_version("1.3", "min_version") == ssl.TLSVersion.TLSv1_3
    assert tls_version(771, "min_version") == ssl.TLSVersion.TLSv1_2  # Tyk's number
    assert tls_version("TLSv1.2", "min_version") == ssl.TLSVersion.TLSv1_2
    assert tls_version("", "max_version") is None
    with pytest.raises(TlsError, match="max_version: '2.0' is not a TLS version"):
        tls_version("2.0", "max_version")
    assert openssl_ciphers(["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"]) == \
        "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
    with pytest.raises(TlsError, match="'NOPE' is not a cipher suite"):
        openssl_ciphers(["NOPE"])


def test_peer_certificate_hash_validity_and_memo(ca, leaf):
    peer = PeerCertificate(der_of(pem(leaf)))
    assert peer.sha256 == hashlib.sha256(peer.der).hexdigest()
    assert peer.chain == (peer.der,)  # no SSL object (a resumed session): the leaf only
    assert not peer.expired() and peer.expired(NOW.timestamp() + 10 ** 11) and peer.expired(0)


# ---- API settings -----------------------------------------------------------------------------


def classic(**fields):
    base = {"api_id": "a", "org_id": "o", "proxy": {"listen_path": "/a/", "target_url": "http://u"}}
    return decode_classic({**base, **fields}, "a.json")


def oas(server):
    doc = {"openapi": "3.0.3", "info": {"title": "a", "version": "1"}, "paths": {},
           "x-tyk-api-gateway": {"info": {"id": "a", "name": "a"}, "upstream": {"url": "http://u"},
                                 "server": {"listenPath": {"value": "/a/"}, **server}}}
    return decode_oas(doc, "a.json")


def test_mtls_settings_from_both_formats():
    spec = classic(use_mutual_tls_auth=True, client_certificates=["x", "y"], use_keyless=False,
                   use_standard_auth=True, auth_configs={"authToken": {"use_certificate": True}},
                   client_certificate_identity="san_uri", client_certificate_crl_file="r.crl")
    assert mtls.mtls_settings(spec) == mtls.MtlsSettings(True, ("x", "y"), True, "san_uri", "r.crl")
    spec = oas({"clientCertificates": {"enabled": True, "allowlist": ["x"], "crlFile": "c.crl"},
                "authentication": {"enabled": True, "certificateAuth": {"enabled": True, "identity": "subject_cn"}}})
    assert mtls.mtls_settings(spec) == mtls.MtlsSettings(True, ("x",), True, "subject_cn", "c.crl")
    # The old contract: a token scheme's enableClientCertificate.
    spec = oas({"authentication": {"enabled": True, "securitySchemes": {"k": {"enableClientCertificate": True}}}})
    assert mtls.mtls_settings(spec).dynamic
    assert not mtls.mtls_settings(classic(use_keyless=True, auth_configs={"authToken": {"use_certificate": True}})).dynamic


def test_definitions_that_cannot_work_are_refused(tmp_path):
    config = config_from_mapping({"base_dir": str(tmp_path)}, environ={})
    bad = [
        classic(use_keyless=False, auth_configs={"authToken": {"use_certificate": True}},
                client_certificate_identity="email"),
        classic(use_keyless=False, auth_configs={"authToken": {"use_certificate": True}},
                client_certificate_identity="san_uri"),  # no CA allowlisted: anyone could claim one
        classic(use_mutual_tls_auth=True, client_certificate_crl_file="missing.crl"),
    ]
    problems = mtls.check_mtls_definitions(config, bad)
    assert len(problems) == 3
    assert "client_certificate_identity: 'email' is not one of sha256, san_uri, san_dns, subject_cn" in problems[0]
    assert "need static mTLS with an allowlist" in problems[1]
    assert "client_certificate_crl_file" in problems[2] and "cannot be read" in problems[2]


# ---- decisions --------------------------------------------------------------------------------


def entry_for(issued_pem: bytes, *, is_ca: bool = False, not_after: float | None = None) -> mtls.AllowedCertificate:
    cert = x509.load_pem_x509_certificate(issued_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return mtls.AllowedCertificate(hashlib.sha256(der).hexdigest(), cert, (der,), is_ca,
                                   cert.not_valid_after_utc.timestamp() if not_after is None else not_after)


def peer_with_chain(*pems: bytes) -> PeerCertificate:
    ders = [der_of(p) for p in pems]
    peer = PeerCertificate(ders[0])
    peer._chain = tuple(ders)  # what OpenSSL verified
    return peer


def test_allowlist_match_by_fingerprint_ca_and_intermediate(ca, leaf):
    intermediate = ca.create_child_ca()
    below = intermediate.issue_cert("deep.example")
    stranger = trustme.CA().issue_cert("x.example")
    root = entry_for(ca.cert_pem.bytes(), is_ca=True)

    window = mtls._match(peer_with_chain(pem(leaf), ca.cert_pem.bytes()), (entry_for(pem(leaf)),), None)
    assert isinstance(window, tuple) and window[0] <= NOW.timestamp() <= window[1]
    assert isinstance(mtls._match(peer_with_chain(pem(leaf)), (root,), None), tuple)  # issued by the CA
    deep = peer_with_chain(pem(below), intermediate.cert_pem.bytes(), ca.cert_pem.bytes())
    assert isinstance(mtls._match(deep, (root,), None), tuple)  # through the verified intermediate
    # Only the verified path counts: the leaf alone is not signed by the root.
    denied = mtls._match(peer_with_chain(pem(below)), (root,), None)
    assert denied == Denial(403, f"Certificate with SHA256 {hashlib.sha256(der_of(pem(below))).hexdigest()} not allowed")
    assert isinstance(mtls._match(peer_with_chain(pem(stranger)), (root,), None), Denial)
    # An allowlisted certificate past its end: the window is empty, the stage says "expired".
    expired_entry = entry_for(pem(leaf), not_after=NOW.timestamp() - 60)
    start, end = mtls._match(peer_with_chain(pem(leaf)), (expired_entry,), None)
    assert end < NOW.timestamp()


def test_crl_revokes_anywhere_on_the_path(ca, leaf, tmp_path):
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    serial = x509.load_pem_x509_certificate(pem(leaf)).serial_number
    crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject).last_update(NOW)
           .next_update(NOW + datetime.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build())
           .sign(key, hashes.SHA256()))
    (tmp_path / "one.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM) * 2)  # several PEM blocks
    (tmp_path / "one.der").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    for name in ("one.pem", "one.der"):
        revocations = mtls.load_crl_file(tmp_path / name)
        peer = peer_with_chain(pem(leaf), ca.cert_pem.bytes())
        assert revocations.revoked_peer(peer)
        assert mtls._match(peer, (entry_for(ca.cert_pem.bytes(), is_ca=True),), revocations) == mtls.CERT_REVOKED
        assert not revocations.revoked_peer(peer_with_chain(pem(ca.issue_cert("fresh.example"))))
    (tmp_path / "bad.crl").write_bytes(b"nonsense")
    with pytest.raises(mtls.CrlError, match="not a PEM or DER certificate revocation list"):
        mtls.load_crl_file(tmp_path / "bad.crl")


def test_identities(ca):
    issued = ca.issue_cert("svc.example", "alt.example", common_name="svc")
    peer = PeerCertificate(der_of(pem(issued)))
    assert mtls.identity_of(peer, "sha256", "org") == "org" + peer.sha256
    assert mtls.identity_of(peer, "san_dns", "org") == "san_dns:svc.example"
    assert mtls.identity_of(peer, "subject_cn", "org") == "subject_cn:svc"
    assert mtls.identity_of(peer, "san_uri", "org") == ""  # it has none: no key can match


def test_wrong_identity_config_is_a_definition_error():
    with pytest.raises(DefinitionError):
        mtls._validate(classic(client_certificate_identity="dn"), config_from_mapping({}, environ={}))
