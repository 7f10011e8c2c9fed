#include "crypto/name_cipher.h"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

namespace scratchcrypt {

namespace {

constexpr size_t kSivKeyBytes = 64;
constexpr size_t kSymlinkNonceBytes = 16;
constexpr size_t kNameHashBytes = 32;
constexpr uint8_t kXattrValueFormat = 0x01;

std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string as_string(const std::vector<uint8_t>& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

DirId DirId::random() {
  ensure_sodium();
  DirId id;
  randombytes_buf(id.bytes.data(), id.bytes.size());
  return id;
}

bool is_long_name(std::string_view n) { return n.size() > 2 && n.substr(0, 2) == ".L"; }
bool is_companion_name(std::string_view n) { return n.size() > 2 && n.substr(0, 2) == ".N"; }

std::string companion_of(std::string_view long_backing_name) {
  return ".N" + std::string(long_backing_name.substr(2));
}

std::string text_hash(std::string_view text) {
  uint8_t hash[kNameHashBytes];
  crypto_generichash(hash, sizeof hash, reinterpret_cast<const uint8_t*>(text.data()),
                     text.size(), nullptr, 0);
  return base64url_encode(hash);
}

std::string base64url_encode(std::span<const uint8_t> bytes) {
  constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(bytes.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), kVariant);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text) {
  std::vector<uint8_t> out(text.size() * 3 / 4 + 1);
  size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr,
                        &length, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(length);
  return out;
}

NameCipher::NameCipher(const VolumeKey& key)
    : siv_(fetch_cipher("AES-256-SIV")),
      key_(key.derive(purpose::kNames, kSivKeyBytes)),
      pool_([] {
        EvpCipherCtx ctx(EVP_CIPHER_CTX_new());
        if (!ctx) throw_openssl_error("cannot allocate the name cipher");
        return ctx;
      }) {
  auto probe = pool_.lease();
  rekey(probe.get(), 1);  // a bad key fails here, at mount
}

// OpenSSL's SIV context does one operation per keying, so every operation
// re-keys a pooled context in place. (Copying a keyed SIV context instead
// corrupted the heap under concurrency in OpenSSL 3.0.)
void NameCipher::rekey(EVP_CIPHER_CTX* ctx, int encrypting) {
  if (EVP_CipherInit_ex2(ctx, siv_.get(), key_.data(), nullptr, encrypting, nullptr) != 1) {
    throw_openssl_error("cannot key the name cipher");
  }
}

std::vector<uint8_t> NameCipher::seal(std::initializer_list<std::span<const uint8_t>> ad,
                                      std::span<const uint8_t> plaintext) {
  auto lease = pool_.lease();
  EVP_CIPHER_CTX* ctx = lease.get();
  rekey(ctx, 1);
  std::vector<uint8_t> out(kSivTagBytes + plaintext.size());
  int written = 0;
  for (const auto& component : ad) {
    if (EVP_EncryptUpdate(ctx, nullptr, &written, component.data(),
                          static_cast<int>(component.size())) != 1) {
      throw_openssl_error("AES-SIV associated data");
    }
  }
  if (EVP_EncryptUpdate(ctx, out.data() + kSivTagBytes, &written, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, out.data() + kSivTagBytes, &written) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kSivTagBytes, out.data()) != 1) {
    throw_openssl_error("AES-SIV encryption");
  }
  return out;
}

std::optional<std::vector<uint8_t>> NameCipher::open(
    std::initializer_list<std::span<const uint8_t>> ad,
    std::span<const uint8_t> ciphertext) {
  if (ciphertext.size() < kSivTagBytes) return std::nullopt;
  auto lease = pool_.lease();
  EVP_CIPHER_CTX* ctx = lease.get();
  rekey(ctx, 0);
  std::vector<uint8_t> tag(ciphertext.begin(), ciphertext.begin() + kSivTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kSivTagBytes, tag.data()) != 1) {
    throw_openssl_error("AES-SIV tag");
  }
  int written = 0;
  for (const auto& component : ad) {
    if (EVP_DecryptUpdate(ctx, nullptr, &written, component.data(),
                          static_cast<int>(component.size())) != 1) {
      return std::nullopt;
    }
  }
  std::vector<uint8_t> out(ciphertext.size() - kSivTagBytes);
  if (EVP_DecryptUpdate(ctx, out.data(), &written, ciphertext.data() + kSivTagBytes,
                        static_cast<int>(out.size())) != 1 ||
      EVP_DecryptFinal_ex(ctx, out.data(), &written) != 1) {
    return std::nullopt;  // does not authenticate
  }
  return out;
}

BackingName NameCipher::encrypt_name(const DirId& dir, std::string_view name) {
  std::string text = base64url_encode(seal({as_bytes("name"), dir.bytes}, as_bytes(name)));
  if (text.size() <= kMaxNameBytes) return {std::move(text), {}};
  std::string backing = ".L" + text_hash(text);
  return {std::move(backing), std::move(text)};
}

std::optional<std::string> NameCipher::decrypt_name(const DirId& dir, std::string_view text) {
  auto raw = base64url_decode(text);
  if (!raw) return std::nullopt;
  auto name = open({as_bytes("name"), dir.bytes}, *raw);
  if (!name || name->empty() || name->size() > kMaxNameBytes) return std::nullopt;
  std::string out = as_string(*name);
  if (out.find('/') != std::string::npos || out.find('\0') != std::string::npos ||
      out == "." || out == "..") {
    return std::nullopt;
  }
  return out;
}

std::string NameCipher::encrypt_symlink(std::string_view target) {
  uint8_t nonce[kSymlinkNonceBytes];
  randombytes_buf(nonce, sizeof nonce);
  std::vector<uint8_t> stored(nonce, nonce + sizeof nonce);
  auto sealed = seal({as_bytes("symlink"), nonce}, as_bytes(target));
  stored.insert(stored.end(), sealed.begin(), sealed.end());
  return base64url_encode(stored);
}

std::optional<std::string> NameCipher::decrypt_symlink(std::string_view stored) {
  auto raw = base64url_decode(stored);
  if (!raw || raw->size() < kSymlinkNonceBytes + kSivTagBytes) return std::nullopt;
  std::span<const uint8_t> nonce(raw->data(), kSymlinkNonceBytes);
  auto target = open({as_bytes("symlink"), nonce},
                     std::span<const uint8_t>(*raw).subspan(kSymlinkNonceBytes));
  if (!target) return std::nullopt;
  return as_string(*target);
}

std::string NameCipher::encrypt_xattr_name(std::string_view name) {
  return std::string(kXattrPrefix) +
         base64url_encode(seal({as_bytes("xattr-name")}, as_bytes(name)));
}

std::optional<std::string> NameCipher::decrypt_xattr_name(std::string_view stored) {
  if (stored.substr(0, kXattrPrefix.size()) != kXattrPrefix) return std::nullopt;
  auto raw = base64url_decode(stored.substr(kXattrPrefix.size()));
  if (!raw) return std::nullopt;
  auto name = open({as_bytes("xattr-name")}, *raw);
  if (!name) return std::nullopt;
  return as_string(*name);
}

std::vector<uint8_t> NameCipher::encrypt_xattr_value(std::span<const uint8_t> object_id,
                                                     std::string_view name,
                                                     std::span<const uint8_t> value) {
  // SIV (in OpenSSL and elsewhere) refuses an empty plaintext, and xattr
  // values may be empty: a leading format byte makes every value non-empty.
  std::vector<uint8_t> plain(1 + value.size(), kXattrValueFormat);
  std::copy(value.begin(), value.end(), plain.begin() + 1);
  return seal({as_bytes("xattr-value"), object_id, as_bytes(name)}, plain);
}

std::optional<std::vector<uint8_t>> NameCipher::decrypt_xattr_value(
    std::span<const uint8_t> object_id, std::string_view name,
    std::span<const uint8_t> stored) {
  auto plain = open({as_bytes("xattr-value"), object_id, as_bytes(name)}, stored);
  if (!plain || plain->empty() || plain->front() != kXattrValueFormat) return std::nullopt;
  plain->erase(plain->begin());
  return plain;
}

}  // namespace scratchcrypt
