/* src/store/record.c -- see record.h. */
#include "store/record.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Slicing-by-8: about 1 byte per cycle without the instruction. */
static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_x86(uint32_t crc, const unsigned char *p,
                                                          size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_hw)
        return ~crc_x86(crc, p, n);
#endif
    return ~crc_sw(crc, p, n);
}

/* ---- little-endian fields ---- */

void rec_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t rec_get_u64(const void *vp)
{
    const unsigned char *p = vp;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- records ---- */

size_t rec_size(size_t name_len, size_t id_len, size_t data_len)
{
    return REC_HEADER + name_len + id_len + data_len;
}

int rec_encode(struct buf *b, const struct rec *r)
{
    size_t len = rec_size(r->name_len, r->id_len, r->data_len);
    unsigned char h[REC_HEADER];
    size_t start = b->len;

    if (len > REC_MAX || r->name_len > UINT16_MAX || r->id_len > UINT32_MAX)
        return -E2BIG;
    put_u32(h + 4, (uint32_t)len);
    rec_put_u64(h + 8, r->rev);
    rec_put_u64(h + 16, r->aux);
    h[24] = r->kind;
    h[25] = r->flags;
    h[26] = (unsigned char)(r->name_len & 0xff);
    h[27] = (unsigned char)(r->name_len >> 8);
    put_u32(h + 28, (uint32_t)r->id_len);
    put_u32(h, 0);
    if (buf_append(b, h, sizeof(h)) != 0 || buf_append(b, r->name, r->name_len) != 0 ||
        buf_append(b, r->id, r->id_len) != 0 || buf_append(b, r->data, r->data_len) != 0) {
        b->len = start;
        return -E2BIG;
    }
    put_u32((unsigned char *)b->data + start,
            crc32c(0, (unsigned char *)b->data + start + 4, len - 4));
    return 0;
}

enum rec_status rec_decode(const void *vp, size_t avail, struct rec *out)
{
    const unsigned char *p = vp;
    uint32_t len, id_len;
    size_t name_len;

    if (avail < REC_HEADER)
        return REC_TRUNCATED;
    len = get_u32(p + 4);
    if (len < REC_HEADER || len > REC_MAX)
        return REC_BAD_LENGTH;
    if (len > avail)
        return REC_TRUNCATED;
    name_len = (size_t)p[26] | (size_t)p[27] << 8;
    id_len = get_u32(p + 28);
    if ((uint64_t)name_len + id_len > len - REC_HEADER)
        return REC_BAD_LENGTH;
    if (crc32c(0, p + 4, len - 4) != get_u32(p))
        return REC_BAD_CHECKSUM;
    out->rev = rec_get_u64(p + 8);
    out->aux = rec_get_u64(p + 16);
    out->kind = p[24];
    out->flags = p[25];
    out->name = (const char *)p + REC_HEADER;
    out->name_len = name_len;
    out->id = out->name + name_len;
    out->id_len = id_len;
    out->data = out->id + id_len;
    out->data_len = len - REC_HEADER - name_len - id_len;
    out->len = len;
    return REC_OK;
}

const char *rec_status_str(enum rec_status s)
{
    switch (s) {
    case REC_OK:
        return "ok";
    case REC_TRUNCATED:
        return "torn or cut short";
    case REC_BAD_LENGTH:
        return "bad length";
    case REC_BAD_CHECKSUM:
        return "checksum mismatch";
    }
    return "?";
}

size_t rec_find_next(const void *vp, size_t avail, size_t from, uint64_t min_rev, uint64_t max_rev)
{
    const unsigned char *p = vp;
    struct rec r;

    for (size_t off = from; off + REC_HEADER <= avail; off++) {
        uint32_t len = get_u32(p + off + 4);
        uint64_t rev = rec_get_u64(p + off + 8);
        unsigned kind = p[off + 24];
        size_t name_len = (size_t)p[off + 26] | (size_t)p[off + 27] << 8;
        uint32_t id_len = get_u32(p + off + 28);
        /*
         * Cheap filters first: a checksum at every byte offset of a long
         * damaged file would cost O(n^2). Names are at most 64 bytes and
         * keys 128 (store.h); 255 and 1024 leave room.
         */
        if (len < REC_HEADER || len > avail - off || rev < min_rev || rev > max_rev ||
            !((kind >= REC_POST && kind <= REC_IMPORT) || kind == REC_LOG_HEADER ||
              (kind >= REC_SNAP_HEADER && kind <= REC_SNAP_END)) ||
            name_len > 255 || id_len > 1024)
            continue;
        if (rec_decode(p + off, avail - off, &r) == REC_OK)
            return off;
    }
    return SIZE_MAX;
}
