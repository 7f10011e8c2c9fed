#include "crypto/secure_buffer.h"

#include <sodium.h>

#include <new>
#include <stdexcept>
#include <utility>

namespace scratchcrypt {

void ensure_sodium() {
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) throw std::runtime_error("libsodium could not be initialized");
}

SecureBuffer::SecureBuffer(size_t size) : size_(size) {
  ensure_sodium();
  data_ = static_cast<uint8_t*>(sodium_malloc(size == 0 ? 1 : size));
  if (data_ == nullptr) {
    throw std::runtime_error(
        "cannot allocate locked memory for key material (raise RLIMIT_MEMLOCK "
        "or run as root)");
  }
  sodium_memzero(data_, size_);
}

SecureBuffer::~SecureBuffer() {
  if (data_ != nullptr) sodium_free(data_);  // zeroes before unmapping
}

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) sodium_free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void SecureBuffer::zeroize() {
  if (data_ != nullptr) sodium_memzero(data_, size_);
}

bool SecureBuffer::is_zero() const {
  return data_ == nullptr || sodium_is_zero(data_, size_) == 1;
}

}  // namespace scratchcrypt
