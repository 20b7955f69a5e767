// MetricsTls (see metrics_tls.h).
#include "daemon/metrics/metrics_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"

namespace meshd::metrics {
namespace {

struct FreeX509 {
  void operator()(X509* x) const { X509_free(x); }
};
struct FreeChain {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct FreeKey {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct FreeStore {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct FreeBio {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, FreeX509>;
using BioPtr = std::unique_ptr<BIO, FreeBio>;

// The three files' bytes, as read.
struct Texts {
  std::string cert, key, ca;
  bool operator==(const Texts&) const = default;
};

absl::StatusOr<std::string> ReadText(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read it (", std::strerror(errno), ")"));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it"));
  return text;
}

absl::StatusOr<Texts> ReadTexts(const security::TlsFiles& files) {
  Texts t;
  for (auto [flag, path, text] : {std::tuple{"--tls-cert", &files.cert, &t.cert},
                                  std::tuple{"--tls-key", &files.key, &t.key},
                                  std::tuple{"--tls-ca", &files.ca, &t.ca}}) {
    absl::StatusOr<std::string> read = ReadText(flag, *path);
    if (!read.ok()) return read.status();
    *text = *std::move(read);
  }
  return t;
}

BioPtr Bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The certificates in `pem`, in order.
std::vector<X509Ptr> Certificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  BioPtr bio = Bio(pem);
  while (bio != nullptr) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    out.emplace_back(x);
  }
  return out;
}

// A passphrase callback that has none: an encrypted key fails to load instead of prompting.
int NoPassphrase(char*, int, int, void*) { return 0; }

}  // namespace

struct MetricsTls::Material {
  Texts texts;
  X509Ptr leaf;
  std::unique_ptr<STACK_OF(X509), FreeChain> chain;  // the certificates after the leaf
  std::unique_ptr<EVP_PKEY, FreeKey> key;
  std::unique_ptr<X509_STORE, FreeStore> ca;
};

namespace {

absl::StatusOr<std::shared_ptr<const MetricsTls::Material>> Parse(const security::TlsFiles& files,
                                                                  Texts texts) {
  auto m = std::make_shared<MetricsTls::Material>();
  std::vector<X509Ptr> certs = Certificates(texts.cert);
  if (certs.empty()) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", files.cert, ": holds no certificate OpenSSL can read"));
  }
  m->leaf = std::move(certs.front());
  m->chain.reset(sk_X509_new_null());
  for (size_t i = 1; i < certs.size(); ++i) sk_X509_push(m->chain.get(), certs[i].release());
  if (BioPtr bio = Bio(texts.key); bio != nullptr) {
    m->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  }
  if (m->key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", files.key, ": holds no private key OpenSSL can read (unencrypted PEM)"));
  }
  if (X509_check_private_key(m->leaf.get(), m->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key ", files.key,
                                                   " is not the private key of --tls-cert ",
                                                   files.cert));
  }
  m->ca.reset(X509_STORE_new());
  std::vector<X509Ptr> cas = Certificates(texts.ca);
  for (const X509Ptr& ca : cas) X509_STORE_add_cert(m->ca.get(), ca.get());  // takes a reference
  ERR_clear_error();  // the end of each PEM text is reported as an error
  if (cas.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-ca ", files.ca, ": holds no certificate OpenSSL can read"));
  }
  m->texts = std::move(texts);
  return m;
}

}  // namespace

absl::StatusOr<std::shared_ptr<MetricsTls>> MetricsTls::Create(const security::TlsFiles& files,
                                                               absl::Duration refresh) {
  absl::StatusOr<Texts> texts = ReadTexts(files);
  if (!texts.ok()) return texts.status();
  absl::StatusOr<std::shared_ptr<const Material>> material = Parse(files, *std::move(texts));
  if (!material.ok()) return material.status();
  return std::shared_ptr<MetricsTls>(
      new MetricsTls(files, std::max(refresh, absl::Seconds(1)), *std::move(material)));
}

MetricsTls::MetricsTls(const security::TlsFiles& files, absl::Duration refresh,
                       std::shared_ptr<const Material> material)
    : files_(files), refresh_(refresh), material_(std::move(material)),
      next_read_(absl::Now() + refresh) {}

MetricsTls::~MetricsTls() = default;

bool MetricsTls::Configure(void* ssl_ctx) {
  SSL_CTX* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  static constexpr unsigned char kSessionContext[] = "meshd-metrics";
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1) != 1 ||
      SSL_CTX_set_num_tickets(ctx, 0) != 1) {
    ERR_clear_error();
    return false;
  }
  // No resumption: a resumed session would skip the check against the CA as it is now.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_cert_cb(ctx, &MetricsTls::OnCertificate, this);
  return true;
}

// Runs for each handshake, after the client's hello and before this side's certificate and
// certificate request: the connection gets the current certificate, key and CA (the store that
// verifies the client's chain; the context's own store stays empty).
int MetricsTls::OnCertificate(SSL* ssl, void* self) {
  const std::shared_ptr<const Material> m = static_cast<MetricsTls*>(self)->Current();
  if (SSL_use_cert_and_key(ssl, m->leaf.get(), m->key.get(), m->chain.get(), 1) != 1 ||
      SSL_set1_verify_cert_store(ssl, m->ca.get()) != 1) {
    return 0;  // ends the handshake
  }
  return 1;
}

std::shared_ptr<const MetricsTls::Material> MetricsTls::Current() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (now < next_read_) return material_;
  next_read_ = now + refresh_;
  absl::StatusOr<Texts> texts = ReadTexts(files_);
  if (texts.ok() && *texts == material_->texts) return material_;
  absl::StatusOr<std::shared_ptr<const Material>> read =
      texts.ok() ? Parse(files_, *std::move(texts)) : texts.status();
  if (!read.ok()) {
    if (read.status().message() != last_error_) {
      last_error_ = std::string(read.status().message());
      log::Warn("metrics TLS: keeping the previous certificate; the files are read again at the "
                "next refresh",
                {{"error", last_error_}});
    }
    return material_;
  }
  last_error_.clear();
  material_ = *std::move(read);
  log::Info("metrics TLS: new certificate, key or CA read", {{"cert", files_.cert}});
  return material_;
}

}  // namespace meshd::metrics
