/* randmodel.h - random (untrained) models with a chosen compression, for
 * benchmarks and tests that need a realistic .apb file without training one.
 *
 * The weights are He-initialised by apb_model_build; APB layers then get a delta
 * that keeps exactly a fraction `fp_fraction` of their weights in full precision
 * (the weights farthest from +-alpha, i.e. the top quantile of | |w| - alpha |),
 * and BN layers get random but plausible statistics (running mean ~ N(0, 0.1^2),
 * running var ~ U(0.5, 1.5), gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1^2)), so the
 * exported file has the layer mix, sizes and outlier counts of a trained model.
 */
#ifndef APB_RANDMODEL_H
#define APB_RANDMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* arch: convnet, vgg-small, resnet20, resnet18; wq/aq the weight and activation
 * quantization of the compressible layers (first conv / last linear stay fp);
 * input c x h x w, `classes` outputs; fp_fraction in [0, 1] (APB layers only). */
apb_status apb_random_model(const char *arch, apb_wquant wq, apb_aquant aq, int c, int h, int w,
                            int classes, double fp_fraction, uint64_t seed, apb_model **out);

/* The same from a full configuration (arch, wq, aq, geometry, classes and the
 * flags quant_first / quant_last / fp_shortcut / per_channel of model.h). */
apb_status apb_random_model_cfg(const apb_model_cfg *cfg, double fp_fraction, uint64_t seed,
                                apb_model **out);

/* Exports a model in memory as a .apb file with the conventions below. */
apb_status apb_random_model_export(apb_model *m, unsigned char **buf, size_t *size);
/* The same, with the first conv as the approximate 8-bit conv of `apb export
 * --int8-stem` when int8_stem != 0. */
apb_status apb_random_model_export_opt(apb_model *m, int int8_stem, unsigned char **buf, size_t *size);

/* The same model exported in memory as a .apb file (*buf malloc'd, caller
 * frees): class names "class0".."classK-1", normalization mean 0.5 / std 0.25,
 * eval resize of the shorter side to round(h * 256 / 224) when h >= 64 (as the
 * ImageNet transform), none otherwise. */
apb_status apb_random_model_file(const char *arch, apb_wquant wq, apb_aquant aq, int c, int h,
                                 int w, int classes, double fp_fraction, uint64_t seed,
                                 unsigned char **buf, size_t *size);

#endif
