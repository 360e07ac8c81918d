/* The virtio device core (src/hw/virtio/virtio.c): offered features, the
 * status state machine (virtio 1.2 §2.1, §3.1.1), FEATURES_OK refusal,
 * DRIVER_OK activation, reset, NEEDS_RESET and the notifications, driven
 * through the simulated driver (virtio_driver.h). */
#include "test.h"
#include "virtio_driver.h"

#include <stdlib.h>

#define DEV_F_FOO 5     /* a device-specific feature bit we offer */
#define DEV_F_BAR 6     /* one we do not */

struct fake {
    unsigned activated, resets, notifies;
    int activate_rc;
};

static uint64_t fake_features(struct virtio_dev *vd)
{
    return 1ULL << DEV_F_FOO;
}

static int fake_activate(struct virtio_dev *vd)
{
    struct fake *d = vd->opaque;
    d->activated++;
    return d->activate_rc;
}

static void fake_reset(struct virtio_dev *vd)
{
    struct fake *d = vd->opaque;
    d->resets++;
}

static void fake_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct fake *d = vd->opaque;
    d->notifies++;
}

static const struct virtio_device_ops fake_ops = {
    .device_id = 0x7e,
    .name = "fake",
    .num_queues = 2,
    .queue_max_size = 64,
    .features = fake_features,
    .activate = fake_activate,
    .queue_notify = fake_queue_notify,
    .reset = fake_reset,
};

struct fx {
    struct guest_mem mem;
    struct virtio_dev vd;
    struct vdrv drv;
    struct fake dev;
};

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (gmem_init(&f->mem, 4 << 20) < 0 ||
        virtio_dev_init(&f->vd, &fake_ops, &f->dev, &f->mem) < 0) {
        gmem_destroy(&f->mem);
        free(f);
        return NULL;
    }
    vdrv_attach(&f->drv, &f->vd);
    return f;
}

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    vdrv_destroy(&f->drv);
    virtio_dev_destroy(&f->vd);
    gmem_destroy(&f->mem);
    free(f);
}

static void set_status(struct fx *f, uint8_t st)
{
    pthread_mutex_lock(&f->vd.lock);
    virtio_set_status(&f->vd, st);
    pthread_mutex_unlock(&f->vd.lock);
}

#define V1 (1ULL << VIRTIO_F_VERSION_1)
#define ST_AD (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER)

TEST(init_rejects_bad_ops)
{
    struct guest_mem mem;
    CHECK_EQ(gmem_init(&mem, 1 << 20), 0);
    struct virtio_dev *vd = calloc(1, sizeof *vd);
    CHECK(vd);
    struct virtio_device_ops ops = fake_ops;
    ops.queue_max_size = 100;
    CHECK_EQ(virtio_dev_init(vd, &ops, NULL, &mem), -EINVAL);
    ops.queue_max_size = 0;
    CHECK_EQ(virtio_dev_init(vd, &ops, NULL, &mem), -EINVAL);
    ops.queue_max_size = 64;
    ops.num_queues = VIRTIO_MAX_QUEUES + 1;
    CHECK_EQ(virtio_dev_init(vd, &ops, NULL, &mem), -EINVAL);
    ops.num_queues = 1;
    ops.queue_max_size = 32768;
    CHECK_EQ(virtio_dev_init(vd, &ops, NULL, &mem), 0);
    CHECK_EQ(vd->vqs[0].s.size, 32768);
    virtio_dev_destroy(vd);
    free(vd);
    gmem_destroy(&mem);
}

TEST(offered_features)
{
    struct fx *f = fx_new();
    CHECK(f);
    uint64_t want = (1ULL << DEV_F_FOO) | V1 | (1ULL << VIRTIO_F_INDIRECT_DESC) |
                    (1ULL << VIRTIO_F_EVENT_IDX);
    CHECK_EQ(f->vd.device_features, want);
    CHECK_EQ(f->vd.num_queues, 2);
    CHECK_EQ(f->vd.vqs[1].s.size, 64);
    CHECK_EQ(f->vd.vqs[1].s.msix_vector, VIRTIO_MSI_NO_VECTOR);
    CHECK_EQ(f->vd.s.config_msix_vector, VIRTIO_MSI_NO_VECTOR);
    CHECK_EQ(virtio_get_status(&f->vd), 0);
    fx_free(f);
}

TEST(features_ok_accepts_subset)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, V1 | (1ULL << DEV_F_FOO)), 0);
    CHECK(virtio_has_feature(&f->vd, DEV_F_FOO));
    CHECK(virtio_has_feature(&f->vd, VIRTIO_F_VERSION_1));
    CHECK(!virtio_has_feature(&f->vd, VIRTIO_F_EVENT_IDX));
    /* Features are frozen after FEATURES_OK (§3.1.1). */
    virtio_set_driver_features(&f->vd, 0, 0);
    CHECK(virtio_has_feature(&f->vd, DEV_F_FOO));
    fx_free(f);
}

TEST(features_ok_refused_unoffered_bit)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, V1 | (1ULL << DEV_F_BAR)), -EIO);
    CHECK_EQ(virtio_get_status(&f->vd), ST_AD);
    /* DRIVER_OK after a refusal is not accepted either. */
    set_status(f, ST_AD | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    CHECK(!(virtio_get_status(&f->vd) & VIRTIO_STATUS_DRIVER_OK));
    CHECK_EQ(f->dev.activated, 0);
    /* The driver gives up: FAILED is recorded. */
    set_status(f, ST_AD | VIRTIO_STATUS_FAILED);
    CHECK_EQ(virtio_get_status(&f->vd), ST_AD | VIRTIO_STATUS_FAILED);
    /* Still negotiable afresh after a reset, with features unchanged. */
    CHECK_EQ(vdrv_negotiate(&f->drv, V1), 0);
    fx_free(f);
}

TEST(features_ok_refused_without_version_1)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, 1ULL << DEV_F_FOO), -EIO);
    fx_free(f);
}

/* FEATURES_OK before DRIVER is out of order (§3.1.1). */
TEST(features_ok_needs_driver)
{
    struct fx *f = fx_new();
    CHECK(f);
    set_status(f, VIRTIO_STATUS_ACKNOWLEDGE);
    virtio_set_driver_features(&f->vd, 1, 1);   /* VERSION_1 */
    set_status(f, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_FEATURES_OK);
    CHECK_EQ(virtio_get_status(&f->vd), VIRTIO_STATUS_ACKNOWLEDGE);
    fx_free(f);
}

/* Legacy interface: no FEATURES_OK step, no VERSION_1; DRIVER_OK activates
 * with the accepted features limited to the offered ones. */
TEST(legacy_driver_ok)
{
    struct fx *f = fx_new();
    CHECK(f);
    f->vd.s.legacy = true;
    set_status(f, VIRTIO_STATUS_ACKNOWLEDGE);
    set_status(f, ST_AD);
    virtio_set_driver_features(&f->vd, 0, (1u << DEV_F_FOO) | (1u << DEV_F_BAR) |
                                          (1u << VIRTIO_F_EVENT_IDX));
    for (unsigned q = 0; q < 2; q++)
        CHECK_EQ(vdrv_setup_queue(&f->drv, q, 0), 0);
    set_status(f, ST_AD | VIRTIO_STATUS_DRIVER_OK);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_DRIVER_OK);
    CHECK_EQ(f->dev.activated, 1);
    CHECK_EQ(f->vd.s.driver_features, (1ULL << DEV_F_FOO) | (1ULL << VIRTIO_F_EVENT_IDX));
    CHECK(f->vd.vqs[0].event_idx);
    CHECK(!f->vd.vqs[0].indirect);
    /* A legacy reset keeps the interface choice (the transport's). */
    set_status(f, 0);
    CHECK(f->vd.s.legacy);
    fx_free(f);
}

TEST(driver_ok_activates)
{
    struct fx *f = fx_new();
    CHECK(f);
    uint64_t feats = V1 | (1ULL << VIRTIO_F_EVENT_IDX) | (1ULL << VIRTIO_F_INDIRECT_DESC);
    CHECK_EQ(vdrv_init(&f->drv, &f->vd, feats), 0);
    CHECK_EQ(f->dev.activated, 1);
    CHECK_EQ(virtio_get_status(&f->vd), ST_AD | VIRTIO_STATUS_FEATURES_OK |
                                        VIRTIO_STATUS_DRIVER_OK);
    for (unsigned q = 0; q < 2; q++) {
        CHECK(f->vd.vqs[q].s.ready);
        CHECK(f->vd.vqs[q].event_idx);
        CHECK(f->vd.vqs[q].indirect);
    }
    /* Writing the same status again does not re-activate. */
    set_status(f, virtio_get_status(&f->vd));
    CHECK_EQ(f->dev.activated, 1);
    /* Kicks reach the device. */
    vdrv_kick_force(&f->drv, 1);
    CHECK_EQ(f->dev.notifies, 1);
    fx_free(f);
}

/* Modern: DRIVER_OK without FEATURES_OK is refused. */
TEST(driver_ok_needs_features_ok)
{
    struct fx *f = fx_new();
    CHECK(f);
    set_status(f, ST_AD);
    set_status(f, ST_AD | VIRTIO_STATUS_DRIVER_OK);
    CHECK_EQ(virtio_get_status(&f->vd), ST_AD);
    CHECK_EQ(f->dev.activated, 0);
    fx_free(f);
}

/* §2.1.1: the driver never clears a bit; such writes are ignored. */
TEST(status_bits_only_added)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, V1), 0);
    set_status(f, VIRTIO_STATUS_ACKNOWLEDGE);
    CHECK_EQ(virtio_get_status(&f->vd), ST_AD | VIRTIO_STATUS_FEATURES_OK);
    CHECK_EQ(f->dev.resets, 1);     /* only the one vdrv_negotiate did */
    fx_free(f);
}

TEST(activate_failure_needs_reset)
{
    struct fx *f = fx_new();
    CHECK(f);
    f->dev.activate_rc = -ENOMEM;
    CHECK_EQ(vdrv_init(&f->drv, &f->vd, V1), -EIO);
    uint8_t st = virtio_get_status(&f->vd);
    CHECK(st & VIRTIO_STATUS_DRIVER_OK);
    CHECK(st & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    fx_free(f);
}

/* A queue made ready with bad rings and DRIVER_OK: NEEDS_RESET, the device
 * is not activated. */
TEST(bad_queue_at_driver_ok)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, V1), 0);
    CHECK_EQ(vdrv_setup_queue(&f->drv, 0, 0), 0);
    f->vd.vqs[0].s.used_gpa = 1ULL << 40;   /* the transport let it through */
    CHECK_EQ(vdrv_driver_ok(&f->drv), -EIO);
    CHECK_EQ(f->dev.activated, 0);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    fx_free(f);
}

TEST(reset_clears_state)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_init(&f->drv, &f->vd, V1 | (1ULL << VIRTIO_F_EVENT_IDX)), 0);
    unsigned resets = f->dev.resets;
    struct virtq *vq = &f->vd.vqs[0];
    vdrv_setup_queue(&f->drv, 0, 16);
    vq->s.last_avail_idx = 7;
    vq->s.msix_vector = 3;
    f->vd.s.queue_select = 1;
    f->vd.s.isr = 1;
    virtio_notify_config(&f->vd);
    uint32_t gen = f->vd.s.config_generation;
    CHECK(gen > 0);
    set_status(f, 0);
    CHECK_EQ(f->dev.resets, resets + 1);
    CHECK_EQ(virtio_get_status(&f->vd), 0);
    CHECK_EQ(f->vd.s.driver_features, 0);
    CHECK_EQ(f->vd.s.queue_select, 0);
    CHECK_EQ(f->vd.s.isr, 0);
    CHECK(f->vd.s.config_generation >= gen);     /* never goes back */
    for (unsigned q = 0; q < 2; q++) {
        CHECK(!f->vd.vqs[q].s.ready);
        CHECK_EQ(f->vd.vqs[q].s.size, 64);
        CHECK_EQ(f->vd.vqs[q].s.last_avail_idx, 0);
        CHECK_EQ(f->vd.vqs[q].s.desc_gpa, 0);
        CHECK_EQ(f->vd.vqs[q].s.msix_vector, VIRTIO_MSI_NO_VECTOR);
        CHECK(!f->vd.vqs[q].event_idx);
    }
    fx_free(f);
}

TEST(needs_reset_notifies_once)
{
    struct fx *f = fx_new();
    CHECK(f);
    /* Before DRIVER_OK: the bit, but no config interrupt (§2.1.2). */
    set_status(f, ST_AD);
    virtio_dev_set_needs_reset(&f->vd, "test: early");
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 0);
    /* The driver's status writes keep the device's bit. */
    set_status(f, ST_AD | VIRTIO_STATUS_FAILED);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    set_status(f, 0);
    CHECK_EQ(virtio_get_status(&f->vd), 0);
    CHECK_EQ(vdrv_init(&f->drv, &f->vd, V1), 0);
    uint32_t gen = f->vd.s.config_generation;
    virtio_dev_set_needs_reset(&f->vd, "test: broken");
    virtio_dev_set_needs_reset(&f->vd, "test: broken again");
    CHECK_EQ(f->drv.config_irqs, 1);
    CHECK_EQ(f->vd.s.config_generation, gen + 1);
    /* A broken device pops nothing and stops its loop. */
    struct virtq_elem *e = malloc(sizeof *e);
    CHECK(e);
    int rc = virtio_queue_pop(&f->vd, 0, e);
    free(e);
    CHECK_EQ(rc, -EIO);
    CHECK(!virtio_queue_set_notification(&f->vd, 0, true));
    fx_free(f);
}

/* Used-buffer interrupts only after DRIVER_OK, and only as the driver
 * asks (avail->flags without EVENT_IDX). */
TEST(notify_rules)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, V1), 0);
    CHECK_EQ(vdrv_setup_queue(&f->drv, 0, 0), 0);
    virtio_notify(&f->vd, 0);
    virtio_notify_config(&f->vd);
    CHECK_EQ(f->drv.irqs[0], 0);
    CHECK_EQ(f->drv.config_irqs, 0);
    CHECK_EQ(vdrv_driver_ok(&f->drv), 0);
    virtio_notify(&f->vd, 0);
    CHECK_EQ(f->drv.irqs[0], 1);
    vdrv_disable_cb(&f->drv, 0);
    virtio_notify(&f->vd, 0);
    CHECK_EQ(f->drv.irqs[0], 1);
    virtio_notify(&f->vd, 7);               /* no such queue: ignored */
    virtio_notify_config(&f->vd);
    CHECK_EQ(f->drv.config_irqs, 1);
    fx_free(f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    RUN(init_rejects_bad_ops);
    RUN(offered_features);
    RUN(features_ok_accepts_subset);
    RUN(features_ok_refused_unoffered_bit);
    RUN(features_ok_refused_without_version_1);
    RUN(features_ok_needs_driver);
    RUN(legacy_driver_ok);
    RUN(driver_ok_activates);
    RUN(driver_ok_needs_features_ok);
    RUN(status_bits_only_added);
    RUN(activate_failure_needs_reset);
    RUN(bad_queue_at_driver_ok);
    RUN(reset_clears_state);
    RUN(needs_reset_notifies_once);
    RUN(notify_rules);
    return test_summary();
}
