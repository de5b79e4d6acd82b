#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

namespace chatd::users::test_support {

/// A self-signed certificate and its key, both PEM, made in memory so that the HTTPS tests
/// need no files checked in (and none that expire).
struct TestCertificate {
  std::string certificate_pem;
  std::string key_pem;

  /// `subject_alt_name` in OpenSSL config syntax, e.g. "DNS:localhost,IP:127.0.0.1".
  static TestCertificate make(const std::string& subject_alt_name) {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
    std::unique_ptr<X509, decltype(&X509_free)> certificate(X509_new(), X509_free);
    X509* cert = certificate.get();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key.get());
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("chatd test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    add_extension(cert, NID_subject_alt_name, subject_alt_name);
    add_extension(cert, NID_basic_constraints, "critical,CA:TRUE");
    X509_sign(cert, key.get(), EVP_sha256());

    TestCertificate result;
    result.certificate_pem = to_pem([&](BIO* out) { return PEM_write_bio_X509(out, cert); });
    result.key_pem = to_pem([&](BIO* out) {
      return PEM_write_bio_PrivateKey(out, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    return result;
  }

 private:
  static void add_extension(X509* cert, int nid, const std::string& value) {
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
    X509_add_ext(cert, extension, -1);
    X509_EXTENSION_free(extension);
  }

  template <typename Write>
  static std::string to_pem(Write write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
    write(out.get());
    char* data = nullptr;
    const long size = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
  }
};

}  // namespace chatd::users::test_support
