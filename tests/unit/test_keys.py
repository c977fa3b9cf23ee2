"""Key ids, hashing and lookup candidates, as Tyk makes them."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from fastgate.sessions.key_ids import (
    DEFAULT_MIN_TOKEN_LENGTH, UnknownHashAlgorithm, generate_token, hash_bytes, hash_token,
    lookup_candidates, min_token_length, murmur3_32, murmur3_x64_128, storage_key_id,
    token_hash_algo, token_id, token_org, too_short,
)

# MurmurHash3 reference vectors (seed, x86_32, x64_128 h1, h2, input) from the murmur3 package
# Tyk uses (TykTechnologies/murmur3, murmur_test.go).
VECTORS = [
    (0x00, 0x00000000, 0x0000000000000000, 0x0000000000000000, ""),
    (0x00, 0x248BFA47, 0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19, "hello"),
    (0x00, 0x149BBB7F, 0x342FAC623A5EBC8E, 0x4CDCBC079642414D, "hello, world"),
    (0x00, 0xE31E8A70, 0xB89E5988B737AFFC, 0x664FC2950231B2CB, "19 Jan 2038 at 3:14:07 AM"),
    (0x00, 0xD5C48BFC, 0xCD99481F9EE902C9, 0x695DA1A38987B6E7,
     "The quick brown fox jumps over the lazy dog."),
    (0x01, 0x514E28B7, 0x4610ABE56EFF5CB5, 0x51622DAA78F83583, ""),
    (0x01, 0xBB4ABCAD, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, "hello"),
    (0x01, 0x6F5CB2E9, 0x8B95F808840725C6, 0x1597ED5422BD493B, "hello, world"),
    (0x01, 0xF50E1F30, 0x2A929DE9C8F97B2F, 0x56A41D99AF43A2DB, "19 Jan 2038 at 3:14:07 AM"),
    (0x01, 0x846F6A36, 0xFB3325171F9744DA, 0xAAF8B92A5F722952,
     "The quick brown fox jumps over the lazy dog."),
    (0x2A, 0x087FCD5C, 0xF02AA77DFA1B8523, 0xD1016610DA11CBB9, ""),
    (0x2A, 0xE2DBD2E1, 0xC4B8B3C960AF6F08, 0x2334B875B0EFBC7A, "hello"),
    (0x2A, 0x7EC7C6C2, 0xB91864D797CAA956, 0xD5D139A55AFE6150, "hello, world"),
    (0x2A, 0x58F745F6, 0xFD8F19EBDC8C6B6A, 0xD30FDC310FA08FF9, "19 Jan 2038 at 3:14:07 AM"),
    (0x2A, 0xC02D1434, 0x74F33C659CDA5AF7, 0x4EC7A891CAF316F0,
     "The quick brown fox jumps over the lazy dog."),
]


@pytest.mark.parametrize(("seed", "h32", "h1", "h2", "text"), VECTORS)
def test_murmur3_reference_vectors(seed: int, h32: int, h1: int, h2: int, text: str) -> None:
    assert murmur3_32(text.encode(), seed) == h32
    assert murmur3_x64_128(text.encode(), seed) == (h1, h2)


def test_every_tail_length_is_handled() -> None:
    # 0..33 bytes covers every tail length of both block sizes; results must all differ.
    data = bytes(range(34))
    assert len({murmur3_32(data[:n]) for n in range(34)}) == 34
    assert len({murmur3_x64_128(data[:n]) for n in range(34)}) == 34


def test_hash_bytes_hex_is_big_endian_as_go_sum() -> None:
    assert hash_bytes(b"hello", "murmur32") == "248bfa47"
    assert hash_bytes(b"hello", "murmur64") == "cbd8a7b341bd9b02"
    assert hash_bytes(b"hello", "murmur128") == "cbd8a7b341bd9b025b1e906a48ae1d19"
    assert hash_bytes(b"hello", "sha256") == hashlib.sha256(b"hello").hexdigest()


def test_unknown_hash_algorithm_is_refused() -> None:
    with pytest.raises(UnknownHashAlgorithm, match="unknown key hash function 'md5'"):
        hash_bytes(b"x", "md5")


def test_legacy_token_is_org_plus_id() -> None:
    assert generate_token("default", "abc") == "defaultabc"
    assert generate_token("default", "defaultabc") == "defaultabc"  # org prefix trimmed
    random_token = generate_token("org1")
    assert random_token.startswith("org1") and len(random_token) == 4 + 32
    assert generate_token("org1") != random_token


def test_json_token_has_tyks_exact_bytes() -> None:
    token = generate_token("default", "abc", "sha256")
    assert base64.b64decode(token) == b'{"org":"default","id":"abc","h":"sha256"}'
    assert token.startswith("ey") and token.endswith("=")
    assert (token_org(token), token_id(token), token_hash_algo(token)) == (
        "default", "abc", "sha256")


def test_unknown_algorithm_in_token_falls_back_to_murmur64() -> None:
    token = generate_token("o", "i", "crc32")
    assert orjson.loads(base64.b64decode(token))["h"] == "murmur64"


def test_ids_that_would_break_the_json_token_are_refused() -> None:
    with pytest.raises(ValueError):
        generate_token("default", 'a"b', "sha256")
    assert generate_token("default", 'a"b') == 'defaulta"b'  # legacy form is a plain concat


def test_token_org_of_legacy_tokens() -> None:
    bson_org = "5e9d9544a1dcd60001d0ed20"
    assert token_org(bson_org + "c1f1e3") == bson_org
    assert token_org(bson_org) == ""  # nothing after the org: not an org-prefixed key
    assert token_org("eyNotBase64!") == ""
    assert token_org("plainkey") == ""
    assert token_hash_algo("plainkey") == "" and token_id("plainkey") == ""


def test_hash_token_uses_the_tokens_own_algorithm() -> None:
    token = generate_token("default", "abc", "murmur64")
    assert hash_token(token) == hash_bytes(token.encode(), "murmur64")
    assert hash_token("defaultabc") == hash_bytes(b"defaultabc", "murmur32")  # legacy
    assert hash_token("defaultabc", "sha256") == hashlib.sha256(b"defaultabc").hexdigest()


def test_a_token_naming_an_unknown_algorithm_hashes_with_murmur32() -> None:
    # The token's "h" is client input (found by the wire fuzzer: a 500); Tyk falls back too.
    token = base64.b64encode(b'{"org":"default","id":"abc","h":"sha2*6"}').decode()
    assert token_hash_algo(token) == "sha2*6"
    assert hash_token(token) == hash_bytes(token.encode(), "murmur32")
    assert storage_key_id(token, True) == hash_bytes(token.encode(), "murmur32")


def test_appended_junk_gives_a_different_storage_id() -> None:
    # §17 scenario 4: "<valid key>abc" must not find the key, with or without hashing.
    for algo in ("", "murmur64", "sha256"):
        token = generate_token("default", "k1", algo)
        assert storage_key_id(token + "abc", True) != storage_key_id(token, True)
        assert storage_key_id(token + "abc", False) != storage_key_id(token, False)


def test_storage_key_id() -> None:
    token = generate_token("default", "abc", "sha256")
    assert storage_key_id(token, False) == token
    assert storage_key_id(token, True) == hashlib.sha256(token.encode()).hexdigest()


def test_lookup_candidates_for_a_foreign_credential() -> None:
    got = lookup_candidates("user1", "default", hash_algo="sha256", fallbacks=["murmur64"])
    assert got == [generate_token("default", "user1", "sha256"), "user1",
                   generate_token("default", "user1", "murmur64")]
    assert lookup_candidates("user1", "default") == ["defaultuser1", "user1"]


def test_lookup_candidates_of_own_org_and_username_actions_off() -> None:
    own = generate_token("default", "abc", "sha256")
    assert lookup_candidates(own, "default", hash_algo="sha256") == [own]
    assert lookup_candidates("user1", "default", hash_algo="sha256", fallbacks=["murmur64"],
                             disable_key_actions_by_username=True) == ["user1"]
    assert lookup_candidates('we"ird', "default", hash_algo="sha256") == ['we"ird']


def test_min_token_length() -> None:
    assert DEFAULT_MIN_TOKEN_LENGTH == 3
    assert min_token_length(0) == 3 and min_token_length(8) == 8
    assert too_short("ab") and not too_short("abc")
    assert too_short("abcdefg", 8) and not too_short("abcdefgh", 8)
