// Registers the kernels with the PyTorch dispatcher as vmdm_C::<op>_{fwd,bwd}.
// The Python package wraps them in autograd-aware custom ops (vmdm_kernels/ops.py);
// C++ users can call them through the dispatcher directly.
//
// The Python module itself is made with the bare CPython API, not pybind11:
// it only has to exist (importing it runs the registrations below) and answer
// with_cuda(), and torch/extension.h + pybind11 made this the slowest file to
// compile (twice the time of any kernel file, 2-core CPU).
#include <Python.h>
#include <torch/library.h>

#include "motion_features/motion_features.h"
#include "ray_targets/ray_targets.h"
#include "recover_from_ric/recover_from_ric.h"
#include "reproj_vel/reproj_vel.h"
#include "velocity3d/velocity3d.h"

TORCH_LIBRARY(vmdm_C, m) {
  m.def(
      "reproj_vel_fwd(Tensor joints, Tensor keypoints, Tensor camera, Tensor weights, Tensor? intrinsics, "
      "int depth_mode, float depth_power, float z_min, bool with_pos, bool with_vel) -> (Tensor, Tensor, Tensor)");
  m.def(
      "reproj_vel_bwd(Tensor grad_pos, Tensor grad_vel, Tensor joints, Tensor keypoints, Tensor camera, "
      "Tensor weights, Tensor? intrinsics, Tensor stats, int depth_mode, float depth_power, float z_min, "
      "bool with_pos, bool with_vel, bool need_keypoints, bool need_camera, bool need_intrinsics) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("velocity3d_fwd(Tensor joints, Tensor target, Tensor weights) -> Tensor");
  m.def(
      "velocity3d_bwd(Tensor grad, Tensor joints, Tensor target, Tensor weights, bool need_target) "
      "-> (Tensor, Tensor)");
  m.def("ray_targets_fwd(Tensor joints, Tensor keypoints, Tensor camera, Tensor? intrinsics) -> Tensor");
  m.def(
      "ray_targets_bwd(Tensor grad, Tensor joints, Tensor keypoints, Tensor camera, Tensor? intrinsics, "
      "bool need_keypoints, bool need_camera, bool need_intrinsics) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "motion_features_fwd(Tensor joints, Tensor lengths, int[] bone_child, int[] bone_parent, int[] bone_frame, "
      "float[] rest, int[] facing, int[] feet, float feet_threshold, float facing_sigma, Tensor? mean, "
      "Tensor? std) -> Tensor");
  m.def("recover_from_ric_fwd(Tensor features, int num_joints, Tensor? mean, Tensor? std) -> Tensor");
  m.def(
      "recover_from_ric_bwd(Tensor grad, Tensor features, int num_joints, Tensor? mean, Tensor? std) -> Tensor");
}

#define VMDM_REGISTER_IMPLS(m)                          \
  m.impl("reproj_vel_fwd", &vmdm::reproj_vel_fwd);      \
  m.impl("reproj_vel_bwd", &vmdm::reproj_vel_bwd);      \
  m.impl("velocity3d_fwd", &vmdm::velocity3d_fwd);      \
  m.impl("velocity3d_bwd", &vmdm::velocity3d_bwd);      \
  m.impl("ray_targets_fwd", &vmdm::ray_targets_fwd);    \
  m.impl("ray_targets_bwd", &vmdm::ray_targets_bwd);      \
  m.impl("motion_features_fwd", &vmdm::motion_features_fwd);  \
  m.impl("recover_from_ric_fwd", &vmdm::recover_from_ric_fwd); \
  m.impl("recover_from_ric_bwd", &vmdm::recover_from_ric_bwd);

TORCH_LIBRARY_IMPL(vmdm_C, CPU, m) { VMDM_REGISTER_IMPLS(m) }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(vmdm_C, CUDA, m) { VMDM_REGISTER_IMPLS(m) }
#endif

namespace {

PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"with_cuda", with_cuda, METH_NOARGS, "Whether the extension was compiled with its CUDA kernels."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "vmdm_kernels._C", "vmdm_kernels compiled backends (C++ CPU, CUDA)", -1, methods,
};

}  // namespace

// PyInit_<TORCH_EXTENSION_NAME>: the name the import system looks for.
#define VMDM_CONCAT_(a, b) a##b
#define VMDM_CONCAT(a, b) VMDM_CONCAT_(a, b)
PyMODINIT_FUNC VMDM_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module_def); }
