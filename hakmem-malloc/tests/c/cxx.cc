// C++ under libhakmem.so: operator new/delete (libhakmem's own, and C++'s
// failure semantics: std::bad_alloc, nullptr from the nothrow forms, the
// new_handler loop), over-aligned new, containers and strings,
// exceptions (allocated with malloc), shared_ptr handed across threads,
// and thread_local objects whose destructors free at thread exit.
// Prints "cxx ok" and exits 0.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) {                                                              \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
            std::exit(1);                                                        \
        }                                                                        \
    } while (0)

struct alignas(128) Wide {
    double v[16];
};

static std::atomic<int> tls_destroyed{0};

struct TlsThing {
    std::vector<std::string> names;
    TlsThing() {
        for (int i = 0; i < 50; i++)
            names.push_back(std::string(40 + i, 'x'));
    }
    ~TlsThing() {
        // Allocates and frees during thread teardown.
        std::string joined;
        for (auto &n : names)
            joined += n;
        CHECK(joined.size() > 2000);
        tls_destroyed++;
    }
};

static thread_local TlsThing tls_thing;

static std::mutex mu;
static std::vector<std::shared_ptr<std::string>> shared;

static void work(int id) {
    CHECK(tls_thing.names.size() == 50);
    std::map<int, std::string> m;
    std::unordered_map<std::string, std::vector<int>> u;
    for (int i = 0; i < 20000; i++) {
        m[i] = std::to_string(i * id);
        u[std::to_string(i)].push_back(i);
        if (i % 3 == 0)
            m.erase(i / 2);
    }
    for (int i = 0; i < 20000; i += 997)
        CHECK(u[std::to_string(i)].at(0) == i);
    int caught = 0;
    for (int i = 0; i < 2000; i++) {
        try {
            throw std::runtime_error(std::string(100, 'e') + std::to_string(i));
        } catch (const std::runtime_error &e) {
            caught += e.what()[0] == 'e';
        }
    }
    CHECK(caught == 2000);
    for (int i = 0; i < 200; i++) {
        auto *w = new Wide();
        CHECK(reinterpret_cast<std::uintptr_t>(w) % 128 == 0);
        w->v[15] = i;
        delete w;
        std::unique_ptr<Wide[]> arr(new Wide[7]);
        CHECK(reinterpret_cast<std::uintptr_t>(arr.get()) % 128 == 0);
    }
    // Strings made here are dropped by other threads.
    std::lock_guard<std::mutex> g(mu);
    for (int i = 0; i < 1000; i++)
        shared.push_back(std::make_shared<std::string>(std::string(i % 300, 'a' + id)));
    if (shared.size() > 3000)
        shared.erase(shared.begin(), shared.begin() + 2000);
}

// As common.h's require_hakmem: malloc must be libhakmem's.
static void require_hakmem() {
    const char *any = std::getenv("HAKMEM_TEST_ANY_MALLOC");
    if (any && std::strcmp(any, "1") == 0)
        return;
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &info) || !info.dli_fname || !std::strstr(info.dli_fname, "libhakmem")) {
        std::fprintf(stderr, "malloc is not hakmem's; run under LD_PRELOAD=libhakmem.so\n");
        std::exit(2);
    }
}

static int handler_calls = 0;

// Called by operator new's failure loop; gives up on its second call.
static void handler() {
    if (++handler_calls == 2)
        std::set_new_handler(nullptr);
}

struct alignas(4096) Page {
    unsigned char b[4096];
};

static void new_semantics() {
    const char *any = std::getenv("HAKMEM_TEST_ANY_MALLOC");
    if (!(any && std::strcmp(any, "1") == 0)) {
        // operator new and delete are libhakmem's own, not libstdc++'s
        // calling malloc.
        for (const char *sym : {"_Znwm", "_ZdlPv", "_ZnwmSt11align_val_t", "_ZdlPvm"}) {
            Dl_info info;
            void *f = dlsym(RTLD_DEFAULT, sym);
            CHECK(f && dladdr(f, &info) && info.dli_fname &&
                  std::strstr(info.dli_fname, "libhakmem"));
        }
    }
    volatile std::size_t huge = SIZE_MAX / 4;
    bool thrown = false;
    try {
        char *p = new char[huge];
        p[0] = 1;
        delete[] p;
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(new (std::nothrow) char[huge] == nullptr);
    // The handler runs, and operator new asks again, until it gives up.
    std::set_new_handler(handler);
    thrown = false;
    try {
        void *p = ::operator new(huge);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 2);
    thrown = false;
    try {
        void *p = ::operator new(huge, std::align_val_t(4096));
        ::operator delete(p, std::align_val_t(4096));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == nullptr);
    // Over-aligned, plain and nothrow, single and array; sized deletes.
    Page *pg = new Page;
    CHECK(reinterpret_cast<std::uintptr_t>(pg) % 4096 == 0);
    pg->b[4095] = 1;
    delete pg;
    Page *pa = new (std::nothrow) Page[3];
    CHECK(pa && reinterpret_cast<std::uintptr_t>(pa) % 4096 == 0);
    pa[2].b[0] = 1;
    delete[] pa;
    for (std::size_t n = 0; n < 5000; n += 7) {
        auto *v = static_cast<unsigned char *>(::operator new(n));
        if (n)
            v[n - 1] = 1;
        ::operator delete(v, n);
        auto *w = new (std::nothrow) unsigned char[n + 1];
        CHECK(w);
        w[n] = 2;
        delete[] w;
    }
}

int main() {
    require_hakmem();
    new_semantics();
    for (int round = 0; round < 10; round++) {
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; i++)
            ts.emplace_back(work, round * 4 + i + 1);
        for (auto &t : ts)
            t.join();
    }
    CHECK(tls_destroyed.load() == 40);
    for (auto &s : shared)
        CHECK(s->size() < 300);
    shared.clear();
    std::puts("cxx ok");
    return 0;
}
