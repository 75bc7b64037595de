/*
 * kvm-flat — the C baseline for tsvmm's exit path.
 *
 * Runs a flat binary guest exactly the way tsvmm does (kvmtool-style):
 *   - one memory slot of -m MiB (default 64) at guest-physical 0;
 *   - the file copied to 0x10000;
 *   - one vCPU in real mode, every segment selector 0x1000 (base 0x10000),
 *     IP = 0, SP = 0xFFF0, RFLAGS = 2 (interrupts off);
 *   - CPUID = KVM_GET_SUPPORTED_CPUID minus CX16 (cmpxchg16b is not emulated on
 *     PVM hosts, see docs/pvm.md).
 * No in-kernel irqchip, so a guest `hlt` comes back as KVM_EXIT_HLT.
 *
 * Devices, all handled inline in the run loop:
 *   port 0x3F8 OUT  COM1 THR: the byte goes to a stdout buffer (written out at exit
 *                   or when full)
 *   port 0x3FD IN   COM1 LSR: 0x60 (transmitter empty, always)
 *   port 0x501 OUT  isa-debug-exit: the process exits with status (v << 1) | 1
 *                   (v is the byte written; only the low 8 bits of the status
 *                   survive, as for any process exit status)
 *   any other port  OUT ignored, IN reads all-ones
 *   MMIO            writes ignored, reads return all-ones (0xFF.. like an empty bus)
 * HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and anything unexpected: a message on
 * stderr, exit status 1.
 *
 * With -e PORT, 1-byte writes to PORT go to an eventfd through KVM_IOEVENTFD
 * and never reach this loop (the eventfd is never read: only the exit path
 * inside KVM is measured), as tsvmm's ioeventfd path does.
 *
 * With -s, a summary line goes to stderr when the VM ends:
 *   exits=<N> ns=<wall ns from the first KVM_RUN to the end> ns_per_exit=<float>
 * where N counts every return from KVM_RUN with an exit (including the last one).
 *
 * The run loop is deliberately minimal — exactly one syscall (KVM_RUN) per exit —
 * so that it is a fair yardstick for tsvmm's loop.
 *
 * Usage: kvm-flat [-m MiB] [-e PORT] [-s] FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOAD_ADDR   0x10000
#define LOAD_SEG    0x1000
#define TSS_ADDR    0xfffbd000UL

#define PORT_COM1_THR   0x3F8
#define PORT_COM1_LSR   0x3FD
#define PORT_DEBUG_EXIT 0x501

static void die(const char *what)
{
    fprintf(stderr, "kvm-flat: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- console output: buffered, one write(2) at the end (or when full) ---- */
static char out_buf[1 << 16];
static size_t out_len;

static void out_flush(void)
{
    size_t off = 0;
    while (off < out_len) {
        ssize_t n = write(STDOUT_FILENO, out_buf + off, out_len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)n;
    }
    out_len = 0;
}

static inline void out_byte(char c)
{
    if (out_len == sizeof(out_buf))
        out_flush();
    out_buf[out_len++] = c;
}

/* ---- statistics ---- */
static int opt_stats;
static uint64_t n_exits;
static struct timespec t_start;

static uint64_t ns_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (uint64_t)(b.tv_sec - a->tv_sec) * 1000000000ULL + (uint64_t)b.tv_nsec -
           (uint64_t)a->tv_nsec;
}

/* End the process: take the time first, then flush the guest's output. */
static void finish(int status)
{
    uint64_t ns = ns_since(&t_start);
    out_flush();
    if (opt_stats)
        fprintf(stderr, "exits=%llu ns=%llu ns_per_exit=%.1f\n", (unsigned long long)n_exits,
                (unsigned long long)ns, n_exits ? (double)ns / (double)n_exits : 0.0);
    exit(status);
}

static void usage(void)
{
    fprintf(stderr, "usage: kvm-flat [-m MiB] [-e PORT] [-s] FILE\n");
    exit(2);
}

static void set_cpuid(int kvm, int vcpu)
{
    int nent = 256;
    struct kvm_cpuid2 *cpuid;
    for (;;) {
        cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(cpuid->entries[0]));
        if (!cpuid)
            die("calloc");
        cpuid->nent = (uint32_t)nent;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
            break;
        if (errno != E2BIG)
            die("KVM_GET_SUPPORTED_CPUID");
        free(cpuid);
        nent *= 2;
    }
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function == 1)
            e->ecx &= ~(1u << 13); /* CX16: cmpxchg16b fails emulation on PVM */
    }
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
        die("KVM_SET_CPUID2");
    free(cpuid);
}

static void set_real_mode(int vcpu)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    struct kvm_segment *segs[] = {&sregs.cs, &sregs.ds, &sregs.es,
                                  &sregs.fs, &sregs.gs, &sregs.ss};
    for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
        segs[i]->selector = LOAD_SEG;
        segs[i]->base = (uint64_t)LOAD_SEG << 4;
    }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = 0;
    regs.rsp = 0xFFF0;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");
}

static const char *exit_name(uint32_t r)
{
    switch (r) {
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_DEBUG: return "DEBUG";
    case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
    default: return "unexpected";
    }
}

/* The guest stopped in a way that is not a debug-exit: report, exit 1. */
static void vm_stopped(int vcpu, struct kvm_run *run)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint64_t ns = ns_since(&t_start);
    out_flush();
    fprintf(stderr, "kvm-flat: guest stopped: KVM_EXIT_%s (exit_reason %u)", exit_name(run->exit_reason),
            run->exit_reason);
    if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
        fprintf(stderr, " suberror %u", run->internal.suberror);
    if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
        fprintf(stderr, " hardware_entry_failure_reason 0x%llx",
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    if (ioctl(vcpu, KVM_GET_REGS, &regs) == 0 && ioctl(vcpu, KVM_GET_SREGS, &sregs) == 0)
        fprintf(stderr, " at cs=0x%x rip=0x%llx cr0=0x%llx efer=0x%llx",
                sregs.cs.selector, (unsigned long long)regs.rip,
                (unsigned long long)sregs.cr0, (unsigned long long)sregs.efer);
    fputc('\n', stderr);
    if (opt_stats)
        fprintf(stderr, "exits=%llu ns=%llu ns_per_exit=%.1f\n", (unsigned long long)n_exits,
                (unsigned long long)ns, n_exits ? (double)ns / (double)n_exits : 0.0);
    exit(1);
}

int main(int argc, char **argv)
{
    size_t mem_mib = 64;
    long eventfd_port = -1;
    int opt;
    while ((opt = getopt(argc, argv, "m:e:s")) != -1) {
        switch (opt) {
        case 'm': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 0);
            if (*end || v < 1 || v > (1UL << 20))
                usage();
            mem_mib = v;
            break;
        }
        case 'e': {
            char *end;
            long v = strtol(optarg, &end, 0);
            if (*end || v < 0 || v > 0xffff)
                usage();
            eventfd_port = v;
            break;
        }
        case 's': opt_stats = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1)
        usage();
    const char *path = argv[optind];
    size_t mem_size = mem_mib << 20;

    /* ---- VM ---- */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("open /dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "kvm-flat: unexpected KVM API version\n");
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
        die("KVM_SET_TSS_ADDR");

    /* ---- an ioeventfd, if asked for ---- */
    if (eventfd_port >= 0) {
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
            die("eventfd");
        struct kvm_ioeventfd ioeventfd = {
            .addr = (uint64_t)eventfd_port,
            .len = 1,
            .fd = efd,
            .flags = KVM_IOEVENTFD_FLAG_PIO,
        };
        if (ioctl(vm, KVM_IOEVENTFD, &ioeventfd) < 0)
            die("KVM_IOEVENTFD");
    }

    /* ---- memory ---- */
    uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = mem_size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    /* ---- load the flat binary at 0x10000 ---- */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "kvm-flat: %s: %s\n", path, strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat");
    if (st.st_size <= 0 || (uint64_t)st.st_size > mem_size - LOAD_ADDR) {
        fprintf(stderr, "kvm-flat: %s: empty or does not fit in guest memory\n", path);
        return 2;
    }
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n = read(fd, mem + LOAD_ADDR + done, (size_t)(st.st_size - done));
        if (n <= 0)
            die("read guest image");
        done += n;
    }
    close(fd);

    /* ---- vCPU ---- */
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");
    set_cpuid(kvm, vcpu);
    set_real_mode(vcpu);

    /* ---- the run loop ---- */
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        n_exits++;

        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            uint32_t size = run->io.size, count = run->io.count;
            if (run->io.direction == KVM_EXIT_IO_OUT) {
                if (run->io.port == PORT_COM1_THR) {
                    /* String I/O (rep outs) delivers `count` items of `size` bytes. */
                    for (uint32_t i = 0; i < count; i++)
                        out_byte((char)data[i * size]);
                } else if (run->io.port == PORT_DEBUG_EXIT) {
                    finish((data[0] << 1) | 1);
                }
                /* other ports: ignored */
            } else {
                if (run->io.port == PORT_COM1_LSR && size == 1)
                    memset(data, 0x60, count); /* THR empty + transmitter empty */
                else
                    memset(data, 0xFF, (size_t)size * count);
            }
            break;
        }
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xFF, sizeof(run->mmio.data));
            break;
        default:
            vm_stopped(vcpu, run);
        }
    }
}
