// C++ tests of the kernels through their C++ API (no Python): the backward
// passes against central finite differences in double precision, the feature
// encoder on a still rest pose, input validation, and the zero-weight /
// behind-camera rules.
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "motion_features/motion_features.h"
#include "ray_targets/ray_targets.h"
#include "recover_from_ric/recover_from_ric.h"
#include "reproj_vel/reproj_vel.h"
#include "velocity3d/velocity3d.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "[ ok ]" : "[FAIL]", what.c_str());
  if (!ok) ++failures;
}

const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

// A camera 4 m in front of the points, looking at them, with pixel intrinsics.
struct Problem {
  torch::Tensor joints, keypoints, camera, weights, intrinsics;
};

Problem make_problem(int64_t B, int64_t T, int64_t J) {
  torch::manual_seed(0);
  Problem p;
  p.joints = torch::randn({B, T, J, 3}, f64) * 0.3;
  p.camera = torch::zeros({B, 3, 4}, f64);
  const double a = 0.3;
  for (int64_t b = 0; b < B; ++b) {
    auto R = torch::tensor({std::cos(a * b), 0.0, std::sin(a * b), 0.0, 1.0, 0.0, -std::sin(a * b), 0.0,
                            std::cos(a * b)}, f64).view({3, 3});
    p.camera[b].slice(1, 0, 3).copy_(R);
    p.camera[b][2][3] = 4.0;
  }
  p.intrinsics = torch::tensor({900.0, 950.0, 500.0, 480.0}, f64).repeat({B, 1});
  // Keypoints a few pixels from the projections keep the loss (and finite-difference roundoff) small.
  auto R = p.camera.slice(2, 0, 3).view({B, 1, 1, 3, 3});
  auto t = p.camera.select(2, 3).view({B, 1, 1, 3});
  auto xc = torch::matmul(R, p.joints.unsqueeze(-1)).squeeze(-1) + t;
  auto f = p.intrinsics.slice(1, 0, 2).view({B, 1, 1, 2});
  auto c = p.intrinsics.slice(1, 2, 4).view({B, 1, 1, 2});
  p.keypoints = f * xc.slice(3, 0, 2) / xc.slice(3, 2, 3) + c + torch::randn({B, T, J, 2}, f64) * 5;
  p.weights = torch::rand({B, T, J}, f64);
  return p;
}

// Max |analytic - numeric| of d(sum(g * f(x)))/dx for every element of x.
double fd_error(torch::Tensor& x, const torch::Tensor& analytic, const std::function<double()>& f) {
  const double eps = 1e-6;
  double worst = 0;
  auto flat = x.view({-1});
  auto grad = analytic.reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double x0 = flat[i].item<double>();
    flat[i] = x0 + eps;
    const double fp = f();
    flat[i] = x0 - eps;
    const double fm = f();
    flat[i] = x0;
    const double numeric = (fp - fm) / (2 * eps);
    const double scale = std::max(1.0, std::abs(numeric));
    worst = std::max(worst, std::abs(numeric - grad[i].item<double>()) / scale);
    if (std::getenv("VMDM_TEST_VERBOSE")) std::printf("  %ld numeric %.9g analytic %.9g\n", (long)i, numeric, grad[i].item<double>());
  }
  return worst;
}

void test_reproj_vel_gradients() {
  auto p = make_problem(2, 4, 3);
  const auto gp = torch::randn({2}, f64), gv = torch::randn({2}, f64);
  // Depth mode "none": no detached weights, so finite differences see the whole function.
  auto loss = [&] {
    auto [pos, vel, stats] = vmdm::reproj_vel_fwd(p.joints, p.keypoints, p.camera, p.weights, p.intrinsics, 0, 0.0,
                                                  0.5, true, true);
    return (pos * gp + vel * gv).sum().item<double>();
  };
  auto [pos, vel, stats] = vmdm::reproj_vel_fwd(p.joints, p.keypoints, p.camera, p.weights, p.intrinsics, 0, 0.0,
                                                0.5, true, true);
  auto [gj, gk, gc, gi] = vmdm::reproj_vel_bwd(gp, gv, p.joints, p.keypoints, p.camera, p.weights, p.intrinsics,
                                               stats, 0, 0.0, 0.5, true, true, true, true, true);
  expect(fd_error(p.joints, gj, loss) < 1e-6, "reproj_vel: grad_joints matches finite differences");
  expect(fd_error(p.keypoints, gk, loss) < 1e-6, "reproj_vel: grad_keypoints matches finite differences");
  expect(fd_error(p.camera, gc, loss) < 1e-6, "reproj_vel: grad_camera matches finite differences");
  expect(fd_error(p.intrinsics, gi, loss) < 1e-6, "reproj_vel: grad_intrinsics matches finite differences");
}

void test_velocity3d_gradients() {
  auto p = make_problem(2, 5, 3);
  auto target = torch::randn_like(p.joints);
  const auto g = torch::randn({2}, f64);
  auto loss = [&] { return (vmdm::velocity3d_fwd(p.joints, target, p.weights) * g).sum().item<double>(); };
  auto [gj, gt] = vmdm::velocity3d_bwd(g, p.joints, target, p.weights, true);
  expect(fd_error(p.joints, gj, loss) < 1e-6, "velocity3d: grad_joints matches finite differences");
  expect(fd_error(target, gt, loss) < 1e-6, "velocity3d: grad_target matches finite differences");
}

void test_ray_targets_gradients() {
  auto p = make_problem(2, 2, 3);
  const auto G = torch::randn({2, 2, 3, 3}, f64);
  auto loss = [&] {
    return (vmdm::ray_targets_fwd(p.joints, p.keypoints, p.camera, p.intrinsics) * G).sum().item<double>();
  };
  auto [gj, gk, gc, gi] = vmdm::ray_targets_bwd(G, p.joints, p.keypoints, p.camera, p.intrinsics, true, true, true);
  expect(fd_error(p.joints, gj, loss) < 1e-6, "ray_targets: grad_joints matches finite differences");
  expect(fd_error(p.keypoints, gk, loss) < 1e-6, "ray_targets: grad_keypoints matches finite differences");
  expect(fd_error(p.camera, gc, loss) < 1e-6, "ray_targets: grad_camera matches finite differences");
  expect(fd_error(p.intrinsics, gi, loss) < 1e-6, "ray_targets: grad_intrinsics matches finite differences");
}

void test_zero_weights_and_guard() {
  auto p = make_problem(1, 3, 2);
  p.weights.zero_();
  p.joints[0][1][0][0] = std::nan("");
  auto [pos, vel, stats] = vmdm::reproj_vel_fwd(p.joints, p.keypoints, p.camera, p.weights, p.intrinsics, 1, 1.0,
                                                0.5, true, true);
  expect(pos.item<double>() == 0 && vel.item<double>() == 0, "all-zero weights: loss is exactly 0, NaN ignored");
  p = make_problem(1, 3, 2);
  p.joints[0][1][0] = torch::tensor({0.0, 0.0, -4.0}, f64);  // camera-frame depth 0: on the camera
  auto out = vmdm::reproj_vel_fwd(p.joints, p.keypoints, p.camera, p.weights, p.intrinsics, 2, 2.0, 0.5, true, true);
  auto grads = vmdm::reproj_vel_bwd(torch::ones({1}, f64), torch::ones({1}, f64), p.joints, p.keypoints, p.camera,
                                    p.weights, p.intrinsics, std::get<2>(out), 2, 2.0, 0.5, true, true, false, false,
                                    false);
  auto gj = std::get<0>(grads);
  expect(torch::isfinite(std::get<0>(out)).all().item<bool>() && torch::isfinite(gj).all().item<bool>(),
         "point at the camera: finite loss and gradients");
  expect(gj[0][1][0].abs().sum().item<double>() == 0, "point at the camera: no gradient");
}

void test_validation() {
  auto p = make_problem(2, 3, 4);
  try {
    vmdm::reproj_vel_fwd(p.joints, p.keypoints.slice(2, 0, 3), p.camera, p.weights, p.intrinsics, 1, 1.0, 0.5, true,
                         true);
    expect(false, "mismatched keypoints raise");
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    expect(msg.find("reproj_vel_fwd: keypoints: expected shape [2, 3, 4, 2], got [2, 3, 3, 2]") != std::string::npos,
           "mismatched keypoints raise a message naming the argument and both shapes");
  }
  try {
    vmdm::ray_targets_fwd(p.joints.to(torch::kFloat32), p.keypoints, p.camera, p.intrinsics);
    expect(false, "mixed dtypes raise");
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    expect(msg.find("keypoints: expected dtype Float (the dtype of joints), got Double") != std::string::npos,
           "mixed dtypes raise a message naming the argument and both dtypes");
  }
}

void test_recover_from_ric_gradients() {
  torch::manual_seed(1);
  const int64_t J = 4, D = 4 + 3 * (J - 1) + 2;  // two channels the decoder does not read
  auto feats = torch::randn({2, 5, D}, f64);
  auto mean = torch::randn({D}, f64) * 0.1, std = torch::rand({D}, f64) + 0.5;
  const auto G = torch::randn({2, 5, J, 3}, f64);
  auto loss = [&] { return (vmdm::recover_from_ric_fwd(feats, J, mean, std) * G).sum().item<double>(); };
  auto grad = vmdm::recover_from_ric_bwd(G, feats, J, mean, std);
  expect(fd_error(feats, grad, loss) < 1e-6, "recover_from_ric: grad_features matches finite differences");
  expect(grad.slice(2, D - 2).abs().sum().item<double>() == 0, "recover_from_ric: unread channels get no gradient");
}

// A body that faces +z exactly (right - left = -x), standing still at rest: every bone
// rotation is the identity, every velocity zero, every foot in contact.
void test_motion_features_rest_pose() {
  const std::vector<int64_t> child = {1, 2, 3, 4, 5, 6}, parent = {0, 0, 0, 3, 3, 2};
  const std::vector<double> rest = {0, 0, 0, -0.1, 0, 0, 0.1, 0, 0, 0, 0.3, 0, -0.15, 0, 0, 0.15, 0, 0, 0, -0.4, 0};
  const std::vector<int64_t> facing = {1, 2, 4, 5}, feet = {6};
  auto pose = torch::zeros({7, 3}, f64);
  for (size_t k = 0; k < child.size(); ++k)
    for (int i = 0; i < 3; ++i) pose[child[k]][i] = pose[parent[k]][i].item<double>() + rest[3 * child[k] + i];
  auto joints = (pose + torch::tensor({0.5, 1.0, -2.0}, f64)).expand({1, 4, 7, 3}).contiguous();
  const std::vector<int64_t> frame = {-1, -1, -1, 3, -1, 2};
  auto f = vmdm::motion_features_fwd(joints, torch::tensor({4}), child, parent, frame, rest, facing, feet, 0.002,
                                     20.0, std::nullopt, std::nullopt);
  expect(f.sizes() == torch::IntArrayRef({1, 3, 12 * 7 - 5 + 1}), "motion_features: [B, T-1, 12J-5+feet]");
  auto rot = f.slice(2, 4 + 3 * 6, 4 + 9 * 6).reshape({1, 3, 6, 6});
  auto identity6 = torch::tensor({1.0, 0.0, 0.0, 0.0, 1.0, 0.0}, f64).expand({1, 3, 6, 6});
  expect(torch::allclose(rot, identity6, 0, 1e-12), "motion_features: rest pose has identity bone rotations");
  expect(f.slice(2, 4 + 9 * 6, 4 + 9 * 6 + 21).abs().max().item<double>() < 1e-12 &&
             f.select(2, 0).abs().max().item<double>() < 1e-12,
         "motion_features: a still body has zero velocities");
  expect(f.select(2, -1).eq(1).all().item<bool>(), "motion_features: a still foot is in contact");
  expect(std::abs(f[0][0][3].item<double>() - 0.4) < 1e-12, "motion_features: root height above the lowest joint");
}

}  // namespace

int main() {
  test_recover_from_ric_gradients();
  test_motion_features_rest_pose();
  test_reproj_vel_gradients();
  test_velocity3d_gradients();
  test_ray_targets_gradients();
  test_zero_weights_and_guard();
  test_validation();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
