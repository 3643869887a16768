/* model.h - a loaded model: the mapped GGUF file, hyperparameters, tokenizer
 * and every weight bound by name with its shape and type checked.
 *
 * Weight matrices stay in their file type (any type of model/quant's table)
 * where gguf_open_as put them, mapped or copied into huge pages, and are
 * converted inside the kernels, so a model needs about its file size of
 * memory. Norm weights and biases (vectors) are small and are copied
 * to F32 at load. A model is immutable after loading and may be shared by
 * threads. */
#ifndef ATTND_MODEL_H
#define ATTND_MODEL_H

#include <stdint.h>

#include "attnd_err.h"
#include "gguf.h"
#include "hparams.h"
#include "tok.h"

typedef struct model model;

/* Loads PATH with its file's bytes brought in as HOW says (gguf.h). */
int model_load_as(const char *path, gguf_load how, model **out, attnd_err *err);
/* model_load_as(PATH, GGUF_LOAD_MAP, ...): tests and tools that start often. */
int model_load(const char *path, model **out, attnd_err *err);
void model_free(model *m);

/* Bytes of all weight tensors (what the file holds). */
uint64_t model_weight_bytes(const model *m);
/* Bytes a decode step reads: every tensor but the embedding tables, of
 * which a step reads one row per token (unless the output shares them). */
uint64_t model_step_bytes(const model *m);
const model_hparams *model_hparams_of(const model *m);
const tok_vocab *model_vocab(const model *m);

#endif
