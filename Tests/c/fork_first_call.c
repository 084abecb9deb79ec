/* A process forked from one that never called attnkit makes its first call
 * with two worker threads, 200 times. Before KernelDispatch.prepare(), 2-3%
 * of such children spun forever in the Swift runtime's lazy-global
 * initialization (two threads meeting in swift_once). Each child has 10 s. */
#include <attnkit.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int first_call(void) {
    static float q[2 * 3 * 4], o[2 * 3 * 4];
    for (int i = 0; i < 24; i++) q[i] = (float)(i % 5) - 2.0f;
    attn_tensor t;
    memset(&t, 0, sizeof t);
    t.data = q; t.dtype = ATTN_DTYPE_F32; t.rank = 4;
    const int64_t shape[4] = {1, 2, 3, 4}, strides[4] = {24, 12, 4, 1};
    memcpy(t.shape, shape, sizeof shape);
    memcpy(t.strides, strides, sizeof strides);
    attn_tensor out = t;
    out.data = o;
    attn_int8_sdpa_params params = {sizeof params, 0, 0, 0, 0.0, ATTN_QK_QUANT_PER_BLOCK, 0};
    attn_set_num_threads(2);
    return attn_int8_sdpa_forward(&params, &t, &t, &t, NULL, &out);
}

int main(void) {
    int stuck = 0, failed = 0;
    for (int i = 0; i < 200; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            _exit(first_call() == ATTN_OK ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) stuck++;
        else if (WEXITSTATUS(status) != 0) failed++;
    }
    printf("fork_first_call: %d passed, %d failed (%d stuck)\n", 200 - stuck - failed, stuck + failed, stuck);
    return stuck + failed != 0;
}
