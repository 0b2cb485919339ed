/* pthreads: a mutex-protected counter, a condvar ping-pong, thread-local
 * storage, join with return values. Deterministic output; exits 0. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NTHREADS 4
#define ITERS 50000
#define ROUNDS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static __thread long tls_value;

static void *incrementer(void *arg) {
    long id = (long)(intptr_t)arg;
    tls_value = id * 1000;
    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
        tls_value++;
    }
    /* Each thread must see only its own TLS. */
    return (void *)(intptr_t)(tls_value == id * 1000 + ITERS);
}

/* Ping-pong: two threads take turns through one condition variable. */
static pthread_mutex_t pp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pp_cond = PTHREAD_COND_INITIALIZER;
static int turn; /* 0: ping's turn, 1: pong's turn */
static int handoffs;

static void *player(void *arg) {
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&pp_lock);
        while (turn != me)
            pthread_cond_wait(&pp_cond, &pp_lock);
        handoffs++;
        turn = !me;
        pthread_cond_broadcast(&pp_cond);
        pthread_mutex_unlock(&pp_lock);
    }
    return NULL;
}

/* A one-shot handoff: main waits for a value produced by a thread. */
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready;
static long produced;

static void *producer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    produced = 424242;
    ready = 1;
    pthread_cond_signal(&ready_cond);
    pthread_mutex_unlock(&lock);
    return (void *)(intptr_t)7;
}

int main(void) {
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, incrementer, (void *)(intptr_t)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    int tls_ok = 1;
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        tls_ok &= (int)(intptr_t)ret;
    }
    printf("counter=%ld expected=%ld\n", counter, (long)NTHREADS * ITERS);
    printf("tls_private=%d main_tls=%ld\n", tls_ok, tls_value);

    pthread_t a, b;
    pthread_create(&a, NULL, player, (void *)0);
    pthread_create(&b, NULL, player, (void *)1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("handoffs=%d expected=%d\n", handoffs, 2 * ROUNDS);

    pthread_t p;
    pthread_create(&p, NULL, producer, NULL);
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&ready_cond, &lock);
    pthread_mutex_unlock(&lock);
    void *pret;
    pthread_join(p, &pret);
    printf("produced=%ld producer_ret=%ld\n", produced, (long)(intptr_t)pret);

    int ok = counter == (long)NTHREADS * ITERS && handoffs == 2 * ROUNDS && tls_ok;
    printf("%s\n", ok ? "threads ok" : "threads FAILED");
    return ok ? 0 : 1;
}
