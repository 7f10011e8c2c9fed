#include "crypto/evp.h"

#include <openssl/err.h>

#include <stdexcept>

namespace scratchcrypt {

void throw_openssl_error(const std::string& what) {
  std::string message = what;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    message += ": ";
    message += buf;
  }
  throw std::runtime_error(message);
}

EvpCipher fetch_cipher(const char* name) {
  EvpCipher cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (!cipher) throw_openssl_error(std::string("OpenSSL has no ") + name);
  return cipher;
}

CipherPool::Lease CipherPool::lease() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      EvpCipherCtx ctx = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(ctx));
    }
  }
  return Lease(*this, make_());  // key a new context outside the lock
}

void CipherPool::give_back(EvpCipherCtx ctx) {
  if (!ctx) return;
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(ctx));
}

}  // namespace scratchcrypt
