/*
 * dnsrace.pml: the DNS Planner and Enactors of the October 2025 DynamoDB race, for Spin.
 *
 * Written from DESIGN.md sections 1-5 and the code it abstracts:
 *   services/enactor/decisions.py  decide_endpoint, _rollback, plan_cleanup (each protection)
 *   services/enactor/enactor.py    run_round: newest, staleness check, walk, clean-up
 *   services/store/lua/change_batch.lua  the zone's rules for one change batch
 * One d_step here is one store round-trip there, by the same actor (pid 0 the planner, pids
 * 1..N the enactors of use1-az1, use1-az2, use1-az4, as in `dnsrace explore`), so a trail is
 * a schedule of the explorer's actors. Each step prints "MC <actor> <what> <numbers>" for
 * `spin -t` (services/modelcheck/trail.py reads them).
 *
 * Switches (-D): FENCED_COMMIT SAFE_CLEANUP PLAN_VALIDATION SELF_REPAIR (the protections);
 * CHECK_I1 CHECK_I2 CHECK_I3 (the invariants asserted; none: all three; NO_INVARIANTS: none);
 * sizes N (enactors, 3) M (plans, 4) E (endpoints, 1-3, 2) AGE (clean-up age, 2) KEEP (safe
 * clean-up keeps the KEEP newest generations, 3); EMPTY_PLANS: the planner may publish a
 * plan that gives one endpoint no healthy address (the explorer's planner never does);
 * FULL_VIEW: keep a copy of what an enactor read and assert the shortcut below.
 *
 * Invariants, asserted in the step that would break them (the explorer checks after every
 * committed batch, and only batches change the zone):
 *   I1 no endpoint alias names a missing or empty tree (a clean-up deleting the tree an
 *      alias names; with EMPTY_PLANS, a flip to an empty tree);
 *   I2 an endpoint's alias generation never goes backwards (a flip to an older plan);
 *   I3 no tree named by an alias or a rollback is deleted.
 *
 * What is abstracted (and why the verdicts still carry over):
 *  - Addresses and weights: a tree is present or absent (or, with EMPTY_PLANS, empty). Every
 *    enactor builds the same tree for the same (plan, endpoint), so a tree's value never
 *    differs from what an enactor expects. Capacity-drop validation is left out: plan weights
 *    wobble by at most 20% and the limit is 50%, so it never refuses.
 *  - Time. Lock leases, back-off sleeps and the fenced batch's not_after_ms are not modelled.
 *    A lock held by another enactor only makes the reader back off and read again, which
 *    changes nothing anyone else can see; so every lock reads as expired when its reader
 *    next runs (waiting is the reader not being scheduled). A lease deadline can only turn a
 *    commit into a retry: the same kind of stutter. The lock record is kept, abstracted to
 *    "who has read it since the last commit on this endpoint" (fresh[e]): every enactor
 *    batch deletes the lock value it read and creates its own, so it loses its lock exactly
 *    when another batch committed on the endpoint since its read.
 *    So the model has every behaviour of the real algorithm, and maybe more (locks that
 *    expire sooner than a lease): "holds" here is a proof for these sizes, and "breaks" is a
 *    trail that services/modelcheck/translate.py plays against the real code to show it is
 *    real (there, the enactor waits out the lease).
 *  - The plan store: plans 1..M published in order, immutable; the newest is `published`.
 *    Reading the newest plan is one step (the explorer's two round-trips, generation and
 *    body: the body is immutable, so when it is read makes no difference). An enactor that
 *    has not started waits for the first plan (the explorer's may first read "no plan yet",
 *    which changes nothing, then wait the same way).
 *  - Clean-up decides as soon as what it depends on was read (trees, then references).
 *  - Left out: the zone serial and notifications, the DNS server, faults, the explorer's
 *    step bound (max_steps), windows of more than one endpoint (the explorer walks one at a
 *    time), cell endpoints (at most the three named ones).
 */

#ifndef N
#define N 3
#endif
#ifndef M
#define M 4
#endif
#ifndef E
#define E 2
#endif
#ifndef AGE
#define AGE 2
#endif
#ifndef KEEP
#define KEEP 3
#endif

#ifdef FENCED_COMMIT
#define FENCED 1
#else
#define FENCED 0
#endif
#ifdef SAFE_CLEANUP
#define SAFE 1
#else
#define SAFE 0
#endif
#ifdef PLAN_VALIDATION
#define VALIDATES 1
#else
#define VALIDATES 0
#endif
#ifdef SELF_REPAIR
#define REPAIRS 1
#else
#define REPAIRS 0
#endif

#if !defined(CHECK_I1) && !defined(CHECK_I2) && !defined(CHECK_I3) && !defined(NO_INVARIANTS)
#define CHECK_I1
#define CHECK_I2
#define CHECK_I3
#endif

/* The tree of plan g (1..M) for endpoint e (0..E-1) as one bit of a set. */
#define TREE(g, e)      (1 << (((g) - 1) * E + (e)))
#define HAS(set, g, e)  ((g) > 0 && ((set) & TREE(g, e)) != 0)
#define MINE            (1 << me)

/* Clean-up deletes oldest generation first, and within one generation by tree name:
 * plan-G.dynamodb-fips < plan-G.dynamodb.dualstack < plan-G.dynamodb.us-east-1 (regional). */
#define BY_NAME(k)      (E == 1 -> 0 : (E == 2 -> 1 - (k) : ((k) == 2 -> 0 : (k) + 1)))

/* -- the zone (our Route 53) and the plan store ---------------------------------------- */
byte published;      /* plans published: the newest generation (0: none yet) */
byte alias[E];       /* generation the root alias of endpoint e names (0: no alias) */
byte rollback[E];    /* generation the rollback of e names (0: no rollback) */
int trees;           /* trees present, a set of TREE(g, e) */
byte fresh[E];       /* enactors whose read of e's lock is still its value (bit per pid) */
int vacant;           /* EMPTY_PLANS: the trees of a plan that gives the endpoint no address */

mtype = { NEWEST, CHECK, READ, APPLY, TREES, REFS, DELETE };

#ifdef EMPTY_PLANS
#define PRINT_PUBLISH(empty_endpoint) printf("MC 0 publish %d %d\n", published, empty_endpoint)
#else
#define PRINT_PUBLISH(empty_endpoint) printf("MC 0 publish %d\n", published)
#endif

/* The planner publishes plans 1..M in order. With EMPTY_PLANS it may find every load
 * balancer of one endpoint unhealthy: that plan gives the endpoint an empty tree. */
#define PUBLISH(empty_endpoint) \
    d_step { published < M && empty_endpoint < E -> \
        published++; \
        if \
        :: empty_endpoint >= 0 -> vacant = vacant | TREE(published, empty_endpoint) \
        :: else \
        fi; \
        PRINT_PUBLISH(empty_endpoint) }

active proctype planner() {
    do
    :: PUBLISH(-1)
#ifdef EMPTY_PLANS
    :: PUBLISH(0)
    :: PUBLISH(1)
    :: PUBLISH(2)
#endif
    :: else -> break
    od
}

/* What an enactor keeps of its read of endpoint e until its batch is judged: whether plan
 * g's tree was there (CREATE it or not) and what the batch does to the rollback. The alias
 * and rollback it read need no copy: its batch commits only if its lock is still the one it
 * read (fresh), and then nobody has committed on e since, so they are alias[e] and
 * rollback[e]. -DFULL_VIEW keeps the copy and asserts exactly that. */
#ifdef FULL_VIEW
#define KEEP_VIEW    va = alias[e]; vr = rollback[e]
#define FORGET_VIEW  va = 0; vr = 0
#define SAME_VIEW    assert(va == alias[e] && vr == rollback[e])
#else
#define KEEP_VIEW    skip
#define FORGET_VIEW  skip
#define SAME_VIEW    skip
#endif

/* Done with endpoint e: forget what was read of it, go on to the next or to clean-up. */
inline next_endpoint() {
    fresh[e] = fresh[e] & ~MINE;
    vt = 0; rbset = 0; rbdel = 0; FORGET_VIEW;
    e++;
    if
    :: e == E -> e = 0; pc = TREES
    :: else -> pc = READ
    fi
}

/* The round is over: wait for a plan newer than the last one read. */
inline end_round() {
    cut = 0; g = 0; pc = NEWEST
}

active [N] proctype enactor() {
    byte me = _pid;    /* 1..N: use1-az1, use1-az2, use1-az4 */
    mtype pc = NEWEST;
    byte seen;         /* plans published when this enactor last read the newest */
    byte g;            /* this round's plan */
    byte e;            /* the endpoint being applied */
    bit vt;            /* plan g's tree for e existed when e was read */
    bit rbset;         /* the batch UPSERTs the rollback to the alias's old tree */
    bit rbdel;         /* the batch DELETEs a dangling rollback (self-repair) */
    int cut;           /* clean-up: the trees it will delete */
    byte k, d, x;      /* loop counters and scratch, always 0 between steps */
    bit kept;
#ifdef FULL_VIEW
    byte va, vr;
#endif

end_idle:
    do
    /* PlanStore.newest: the newest generation, then the plan's body, which is immutable, so
     * when it is read makes no difference: one step here, two in the explorer. An enactor
     * that finished a round waits for a plan newer than the last it read; one that has not
     * started waits for the first (the explorer's enactor may read "no plan yet" first and
     * then wait the same way: a step that changes nothing anyone else can see). */
    :: d_step { pc == NEWEST && published > seen ->
        g = published; seen = published;
        printf("MC %d newest %d\n", me, g);
        pc = CHECK }
    /* the one-time staleness check against the regional endpoint's alias */
    :: d_step { pc == CHECK ->
        if
        :: g <= alias[0] ->
            printf("MC %d uptodate %d %d\n", me, g, alias[0]);
            end_round()
        :: else ->
            printf("MC %d check %d %d\n", me, g, alias[0]);
            e = 0; pc = READ
        fi }
    /* read one endpoint and decide (decide_endpoint) */
    :: d_step { pc == READ ->
        vt = HAS(trees, g, e);
        if
        :: alias[e] == g && vt ->
            printf("MC %d skip %d %d applied\n", me, e, g); next_endpoint()
        :: else ->
            if
            :: FENCED && alias[e] > g ->
                printf("MC %d skip %d %d newer\n", me, e, g); next_endpoint()
            :: else ->
                if
                :: VALIDATES && (vacant & TREE(g, e)) != 0 ->
                    printf("MC %d refuse %d %d\n", me, e, g); next_endpoint()
                :: else ->
                    /* _rollback: point it at the tree the alias named before */
                    if
                    :: alias[e] == 0 || alias[e] == g -> skip
                    :: else ->
                        if
                        :: !REPAIRS || HAS(trees, alias[e], e) -> rbset = 1
                        :: else ->   /* self-repair: keep no dangling rollback */
                            rbdel = (rollback[e] != 0 && !HAS(trees, rollback[e], e))
                        fi
                    fi;
                    KEEP_VIEW;
                    fresh[e] = fresh[e] | MINE;   /* the lock value this batch deletes */
                    printf("MC %d read %d %d\n", me, e, g);
                    pc = APPLY
                fi
            fi
        fi }
    /* the change batch, all or nothing, checked in change_batch.lua's order: the
     * generation fence, the lock (DELETE what was read, CREATE ours), the tree's CREATE,
     * then Route 53's rule that every alias written names an existing record set */
    :: d_step { pc == APPLY ->
        if
        :: FENCED && alias[e] > g ->
            printf("MC %d rejected %d %d generation_fence\n", me, e, g); next_endpoint()
        :: else ->
            if
            :: (fresh[e] & MINE) == 0 ->   /* a batch committed on e since our read */
                printf("MC %d lost %d %d\n", me, e, g);
                vt = 0; rbset = 0; rbdel = 0; FORGET_VIEW;
                pc = READ
            :: else ->
                SAME_VIEW;
                if
                :: !vt && HAS(trees, g, e) ->
                    printf("MC %d rejected %d %d create_exists\n", me, e, g); next_endpoint()
                :: else ->
                    if
                    :: (vt && !HAS(trees, g, e)) || (rbset && !HAS(trees, alias[e], e)) ->
                        printf("MC %d rejected %d %d alias_target_missing\n", me, e, g);
                        next_endpoint()
                    :: else ->
#ifdef CHECK_I2
                        assert(g >= alias[e]);   /* I2: never back to an older plan */
#endif
#ifdef CHECK_I1
                        assert((vacant & TREE(g, e)) == 0);   /* I1: an address to answer */
#endif
                        x = alias[e];
                        trees = trees | TREE(g, e);
                        if
                        :: rbset -> rollback[e] = alias[e]
                        :: rbdel -> rollback[e] = 0
                        :: else
                        fi;
                        alias[e] = g; fresh[e] = 0;
                        printf("MC %d commit %d %d %d %d\n", me, e, g, x, rollback[e]); x = 0;
                        next_endpoint()
                    fi
                fi
            fi
        fi }
    /* clean-up: ZoneStore.trees, then ZoneStore.references, then one batch per tree.
     * plan_cleanup's choice is made as soon as what it depends on was read: from the trees,
     * every tree older than g - AGE (safe: except the KEEP newest generations present);
     * from the references (safe), not one an alias or rollback names. */
    :: d_step { pc == TREES ->
        cut = 0; k = M; x = 0;
        do
        :: k > 0 ->
            kept = 0; d = 0;
            do
            :: d < E -> if :: HAS(trees, k, d) -> kept = 1 :: else fi; d++
            :: else -> break
            od;
            if
            :: kept -> x++; kept = (x <= KEEP)
            :: else
            fi;
            d = 0;
            do
            :: d < E ->
                if
                :: HAS(trees, k, d) && k + AGE < g && !(SAFE && kept) -> cut = cut | TREE(k, d)
                :: else
                fi;
                d++
            :: else -> break
            od;
            k--
        :: else -> break
        od;
        k = 0; d = 0; x = 0; kept = 0;
        printf("MC %d trees\n", me);
        pc = REFS }
    :: d_step { pc == REFS ->
        d = 0;
        do
        :: d < E ->
            if
            :: SAFE && alias[d] > 0 -> cut = cut & ~TREE(alias[d], d)
            :: else
            fi;
            if
            :: SAFE && rollback[d] > 0 -> cut = cut & ~TREE(rollback[d], d)
            :: else
            fi;
            d++
        :: else -> break
        od;
        d = 0;
        printf("MC %d refs\n", me);
        if
        :: cut == 0 -> end_round()
        :: else -> pc = DELETE
        fi }
    :: d_step { pc == DELETE ->
        /* the first tree of the list: oldest generation, then by name */
        k = 1; x = 0;
        do
        :: x == E -> k++; x = 0
        :: x < E && !HAS(cut, k, BY_NAME(x)) -> x++
        :: x < E && HAS(cut, k, BY_NAME(x)) -> break
        od;
        d = BY_NAME(x);
        cut = cut & ~TREE(k, d);
        if
        :: !HAS(trees, k, d) ->
            printf("MC %d missing %d %d\n", me, d, k)
        :: else ->
            if
            :: SAFE && (alias[d] == k || rollback[d] == k) ->
                printf("MC %d referenced %d %d\n", me, d, k)
            :: else ->
#ifdef CHECK_I3
                assert(alias[d] != k && rollback[d] != k);   /* I3: never a live tree */
#endif
#ifdef CHECK_I1
                assert(alias[d] != k);   /* I1: the alias of d would name a missing tree */
#endif
                trees = trees & ~TREE(k, d);
                printf("MC %d delete %d %d\n", me, d, k)
            fi
        fi;
        k = 0; x = 0; d = 0;
        if
        :: cut == 0 -> end_round()
        :: else
        fi }
    od
}
