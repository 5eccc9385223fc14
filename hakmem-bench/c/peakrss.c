/* Runs a workload and reports its peak RSS: `peakrss LIB|- PROGRAM ARGS...`
 * runs PROGRAM with LD_PRELOAD=LIB (none for "-"), waits for it with
 * wait4() and prints "peak_rss_kb N" (ru_maxrss) on stdout after the
 * program's own output, then exits with its status. The wrapper itself runs
 * on the system allocator: LD_PRELOAD is set for the program only.
 * Part of hakmem-bench; built by the driver with cc -O2. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIB|- PROGRAM ARGS...\n", argv[0]);
        return 2;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        if (argv[1][0] != '-' || argv[1][1] != 0)
            setenv("LD_PRELOAD", argv[1], 1);
        else
            unsetenv("LD_PRELOAD");
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 2;
    }
    printf("peak_rss_kb %ld\n", ru.ru_maxrss);
    fflush(stdout);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "peakrss: %s killed by signal %d\n", argv[2], WTERMSIG(status));
    return 128 + WTERMSIG(status);
}
