/* LD_PRELOAD shim that gives wrk a TLS client certificate (wrk has no option for one), for the
 * mTLS benchmarks: every SSL_CTX wrk creates loads WRK_CLIENT_CERT (PEM chain) and WRK_CLIENT_KEY.
 * bench/run.py compiles it (gcc -shared -fPIC) when a scenario names a `client_cert`.
 * libssl's types are opaque here, so no OpenSSL headers are needed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type);
#define PEM_FILETYPE 1 /* SSL_FILETYPE_PEM */

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
    static SSL_CTX *(*real)(const SSL_METHOD *) = NULL;
    if (real == NULL) {
        real = (SSL_CTX * (*)(const SSL_METHOD *)) dlsym(RTLD_NEXT, "SSL_CTX_new");
    }
    SSL_CTX *ctx = real(method);
    const char *cert = getenv("WRK_CLIENT_CERT");
    const char *key = getenv("WRK_CLIENT_KEY");
    if (ctx != NULL && cert != NULL && key != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, PEM_FILETYPE) != 1) {
            fprintf(stderr, "wrk_client_cert: cannot load %s / %s\n", cert, key);
            exit(2);
        }
    }
    return ctx;
}
