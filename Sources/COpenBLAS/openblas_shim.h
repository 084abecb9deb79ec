// The few CBLAS entry points attnkit calls, declared here so the build does not
// depend on where a distribution puts cblas.h. Values follow the CBLAS standard.
#ifndef ATTNKIT_OPENBLAS_SHIM_H
#define ATTNKIT_OPENBLAS_SHIM_H

enum { AttnCblasRowMajor = 101 };
enum { AttnCblasNoTrans = 111, AttnCblasTrans = 112 };

void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
void cblas_dgemm(int order, int transA, int transB, int m, int n, int k,
                 double alpha, const double *a, int lda, const double *b, int ldb,
                 double beta, double *c, int ldc);
void openblas_set_num_threads(int num_threads);

#endif
