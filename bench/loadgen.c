/*
 * loadgen: a closed-loop HTTP/1.1 load driver for the benchmark (bench/run.py builds it with cc).
 *
 *   loadgen HOST PORT PATH BODY_FILE CONCURRENCY WARMUP_S DURATION_S [HEADER ...]
 *
 * A HEADER of the form @FILE stands for one header per line of FILE: connection i sends the
 * line i modulo their number (so that, say, 16 connections act for 16 customers' keys).
 *
 * Keeps CONCURRENCY requests in flight: one thread per kept-alive connection, each sending a
 * POST and reading the whole answer (Content-Length or chunked) before sending the next. Only
 * answers completed inside the measured window (after WARMUP_S, for DURATION_S) count. For each
 * it records the time to the first byte of the answer and the time to its last byte. Prints
 * one JSON object: requests/s, errors, non-2xx answers and the p50/p90/p99 of both times.
 * Written for this benchmark only; plain C and pthreads so the driver is never the bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFFER_BYTES (1 << 20)

static struct sockaddr_in target;
#define MAX_VARIANTS 256

/* One request per header variant; connection i sends requests[i % variants]. */
static char *requests[MAX_VARIANTS];
static size_t request_lens[MAX_VARIANTS];
static int variants = 1;
static uint64_t window_start_ns, window_end_ns;

typedef struct {
    int variant;
    uint32_t *total_us, *ttfb_us;
    size_t count, capacity;
    long errors, non2xx, ok_all; /* ok_all: 2xx answers, warm-up included */
} samples_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_connection(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval timeout = {.tv_sec = 30, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t sent = write(fd, data, len);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += sent;
        len -= (size_t)sent;
    }
    return 0;
}

/* How many bytes the answer in buf[0..len) takes once complete; 0 while incomplete, -1 if
 * malformed. *status gets the status code, *closing whether the server closes afterwards. */
static long answer_length(const char *buf, size_t len, int *status, int *closing) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(buf + 9);
    long content_length = -1;
    int chunked = 0;
    *closing = 0;
    for (const char *line = strstr(buf, "\r\n") + 2; line < end;) {
        const char *next = strstr(line, "\r\n");
        if (strncasecmp(line, "content-length:", 15) == 0) content_length = atol(line + 15);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && memmem(line, (size_t)(next - line), "chunked", 7))
            chunked = 1;
        else if (strncasecmp(line, "connection:", 11) == 0 && memmem(line, (size_t)(next - line), "close", 5))
            *closing = 1;
        line = next + 2;
    }
    if (chunked) {
        size_t at = head;
        for (;;) {
            const char *line_end = memmem(buf + at, len - at, "\r\n", 2);
            if (line_end == NULL) return 0;
            long size = strtol(buf + at, NULL, 16);
            at = (size_t)(line_end - buf) + 2;
            if (size == 0) {
                /* No trailers expected: the last chunk ends with an empty line. */
                return len >= at + 2 ? (long)(at + 2) : 0;
            }
            if (len < at + (size_t)size + 2) return 0;
            at += (size_t)size + 2;
        }
    }
    if (content_length < 0) return -1; /* read-until-close answers are not used here */
    return len >= head + (size_t)content_length ? (long)(head + (size_t)content_length) : 0;
}

static void record(samples_t *s, uint64_t started, uint64_t first, uint64_t done) {
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? s->capacity * 2 : 4096;
        s->total_us = realloc(s->total_us, s->capacity * sizeof *s->total_us);
        s->ttfb_us = realloc(s->ttfb_us, s->capacity * sizeof *s->ttfb_us);
        if (!s->total_us || !s->ttfb_us) abort();
    }
    s->total_us[s->count] = (uint32_t)((done - started) / 1000);
    s->ttfb_us[s->count] = (uint32_t)((first - started) / 1000);
    s->count++;
}

static void *run_connection(void *arg) {
    samples_t *s = arg;
    char *buf = malloc(BUFFER_BYTES);
    int fd = -1;
    while (now_ns() < window_end_ns) {
        if (fd < 0 && (fd = open_connection()) < 0) {
            if (now_ns() >= window_start_ns) s->errors++;
            usleep(10000);
            continue;
        }
        uint64_t started = now_ns(), first = 0;
        size_t have = 0;
        long need = 0;
        int status = 0, closing = 0, failed = write_all(fd, requests[s->variant], request_lens[s->variant]) != 0;
        while (!failed && need == 0) {
            ssize_t got = read(fd, buf + have, BUFFER_BYTES - have);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                failed = 1;
                break;
            }
            if (first == 0) first = now_ns();
            have += (size_t)got;
            need = answer_length(buf, have, &status, &closing);
            if (need < 0 || (need == 0 && have == BUFFER_BYTES)) failed = 1;
        }
        uint64_t done = now_ns();
        int counted = done >= window_start_ns && done < window_end_ns;
        if (failed) {
            if (counted) s->errors++;
            close(fd);
            fd = -1;
            continue;
        }
        if (status >= 200 && status <= 299) s->ok_all++;
        if (counted) {
            record(s, started, first, done);
            if (status < 200 || status > 299) s->non2xx++;
        }
        if (closing) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double percentile(uint32_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    return sorted[rank - 1] / 1000.0;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT PATH BODY_FILE CONCURRENCY WARMUP_S DURATION_S [HEADER ...]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]), concurrency = atoi(argv[5]);
    double warmup_s = atof(argv[6]), duration_s = atof(argv[7]);
    if (concurrency < 1 || duration_s <= 0) return 2;

    FILE *file = fopen(argv[4], "rb");
    if (!file) {
        perror("body file");
        return 2;
    }
    static char body[65536];
    size_t body_len = fread(body, 1, sizeof body, file);
    fclose(file);

    /* The @FILE header's lines, if one was given: one request variant per line. */
    static char lines[MAX_VARIANTS][1024];
    int line_count = 0;
    for (int i = 8; i < argc; i++) {
        if (argv[i][0] != '@') continue;
        FILE *alternatives = fopen(argv[i] + 1, "r");
        if (!alternatives) {
            perror("header file");
            return 2;
        }
        while (line_count < MAX_VARIANTS && fgets(lines[line_count], sizeof lines[0], alternatives)) {
            lines[line_count][strcspn(lines[line_count], "\r\n")] = 0;
            if (lines[line_count][0]) line_count++;
        }
        fclose(alternatives);
    }
    variants = line_count > 0 ? line_count : 1;
    for (int v = 0; v < variants; v++) {
        size_t cap = body_len + 8192;
        char *request = malloc(cap);
        int at = snprintf(request, cap,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n",
                          path, host, port, body_len);
        for (int i = 8; i < argc; i++) {
            const char *header = argv[i][0] == '@' ? (line_count ? lines[v] : NULL) : argv[i];
            if (header) at += snprintf(request + at, cap - (size_t)at, "%s\r\n", header);
        }
        at += snprintf(request + at, cap - (size_t)at, "\r\n");
        memcpy(request + at, body, body_len);
        requests[v] = request;
        request_lens[v] = (size_t)at + body_len;
    }

    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }

    uint64_t start = now_ns();
    window_start_ns = start + (uint64_t)(warmup_s * 1e9);
    window_end_ns = window_start_ns + (uint64_t)(duration_s * 1e9);
    pthread_t *threads = calloc((size_t)concurrency, sizeof *threads);
    samples_t *samples = calloc((size_t)concurrency, sizeof *samples);
    for (int i = 0; i < concurrency; i++) {
        samples[i].variant = i % variants;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pthread_create(&threads[i], &attr, run_connection, &samples[i]);
        pthread_attr_destroy(&attr);
    }
    size_t total = 0;
    long errors = 0, non2xx = 0, ok_all = 0;
    for (int i = 0; i < concurrency; i++) {
        pthread_join(threads[i], NULL);
        total += samples[i].count;
        errors += samples[i].errors;
        non2xx += samples[i].non2xx;
        ok_all += samples[i].ok_all;
    }
    uint32_t *totals = malloc((total + 1) * sizeof *totals), *ttfbs = malloc((total + 1) * sizeof *ttfbs);
    size_t k = 0;
    for (int i = 0; i < concurrency; i++) {
        memcpy(totals + k, samples[i].total_us, samples[i].count * sizeof *totals);
        memcpy(ttfbs + k, samples[i].ttfb_us, samples[i].count * sizeof *ttfbs);
        k += samples[i].count;
    }
    qsort(totals, total, sizeof *totals, compare_u32);
    qsort(ttfbs, total, sizeof *ttfbs, compare_u32);
    printf("{\"requests\": %zu, \"rps\": %.1f, \"errors\": %ld, \"non2xx\": %ld, "
           "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"ttfb_p50_ms\": %.3f, \"ttfb_p90_ms\": %.3f, \"ttfb_p99_ms\": %.3f, "
           "\"answered_2xx\": %ld}\n",
           total, (double)total / duration_s, errors, non2xx,
           percentile(totals, total, 50), percentile(totals, total, 90), percentile(totals, total, 99),
           percentile(ttfbs, total, 50), percentile(ttfbs, total, 90), percentile(ttfbs, total, 99),
           ok_all);
    return 0;
}
