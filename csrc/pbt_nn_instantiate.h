/* pbt_nn_instantiate.h -- includes the per-dtype kernels named by
 * PBT_NN_IMPL (a file name in quotes) twice, as pbt_ops.c does with
 * pbt_ops_impl.h:
 *   real     float, then double
 *   S(name)  name_f32, then name_f64
 *   IS_F32   1, then 0
 *   m_exp, m_log, m_log1p  pbt_vmath.h's vectorised float32 functions, then libm's
 *   m_erfc, m_sqrt         libm's
 * Each kernel file: #define PBT_NN_IMPL "pbt_conv_impl.h", then include this. */
#define real float
#define IS_F32 1
#define S(name) name##_f32
#define m_exp vexpf
#define m_log vlogf
#define m_log1p vlog1pf
#define m_erfc erfcf
#define m_sqrt sqrtf
#include PBT_NN_IMPL
#undef real
#undef IS_F32
#undef S
#undef m_exp
#undef m_log
#undef m_log1p
#undef m_erfc
#undef m_sqrt
#define real double
#define IS_F32 0
#define S(name) name##_f64
#define m_exp exp
#define m_log log
#define m_log1p log1p
#define m_erfc erfc
#define m_sqrt sqrt
#include PBT_NN_IMPL
#undef real
#undef IS_F32
#undef S
#undef m_exp
#undef m_log
#undef m_log1p
#undef m_erfc
#undef m_sqrt
#undef PBT_NN_IMPL
