/* threads.h - the one place apb decides how many OpenMP threads to use.
 *
 * Default: APB_THREADS from the environment, else OpenMP's default. CLI
 * --threads calls apb_threads_set(). Builds without OpenMP (make OMP=0) always
 * report 1. An APB_THREADS that is not a count >= 1 is ignored with one warning
 * on stderr naming it.
 */
#ifndef APB_THREADS_H
#define APB_THREADS_H

void apb_threads_set(int n);
int apb_threads_get(void);
/* While on, apb_threads_get() returns 1 on the calling thread only: a team
 * member that runs a whole computation of its own (apbrt's images in
 * parallel) keeps every driver it calls on itself. */
void apb_threads_solo(int on);
/* The calling thread's number in the current OpenMP team (0 outside one or
 * without OpenMP). */
int apb_thread_num(void);
/* Part `me` of nth contiguous runs that cut n units: [*lo, *hi), me < nth: the
 * bands of apb_claims. */
static inline void apb_split_even(long n, int me, int nth, long *lo, long *hi)
{
    /* the runs of OpenMP's schedule(static) in libgomp: the first n % nth one
     * longer, so a static loop over the same rows gives each thread the same */
    long q = n / nth, t = n % nth;
    *lo = q * me + (me < t ? me : t);
    *hi = *lo + q + (me < t);
}
/* Units 0..n-1 handed out to a team with affinity and balance: each thread
 * takes its own band's units (apb_split_even) in order, then, when those run
 * out, the rest of the other bands'. With threads of equal speed that is the
 * static split, so two stages claiming the same units keep each thread on the
 * same rows, in its own core's cache (moving a stage's data to the other core
 * cost 3x its time, docs/INFERENCE.md, session 17); a thread the host holds up
 * gets its band finished by the others (a static split would wait for it).
 * Set up by apb_claims_init before the team starts, read by every member with
 * apb_claim. */
#define APB_CLAIM_MAX 64
typedef struct {
    int nth;
    long end[APB_CLAIM_MAX];
    struct {
        long v;
        char pad[64 - sizeof(long)];
    } next[APB_CLAIM_MAX]; /* one cache line per band */
} apb_claims;
/* nth: the team's size (bands: at most APB_CLAIM_MAX; a member past them
 * starts at band me % bands). */
void apb_claims_init(apb_claims *c, long n, int nth);
/* The calling member's next unit, or -1 when none is left. */
long apb_claim(apb_claims *c, int me);
/* Nonzero inside an active parallel region (a driver called there runs on the
 * calling thread alone). */
int apb_in_parallel(void);
/* Parses an APB_THREADS value: the count (>= 1), 0 when unset or empty, -1 when
 * it is not a whole number >= 1. */
int apb_threads_env(const char *s);

#endif
