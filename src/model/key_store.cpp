#include "src/model/key_store.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/check.h"
#include "common/choice.h"
#include "common/errors.h"

namespace some::model {

using torch::Tensor;
namespace F = torch::nn::functional;

PeerStats resolve_peer_stats(PeerStats option, int64_t E, int64_t d) {
  if (option == PeerStats::kAuto) return E > d ? PeerStats::kPeerSum : PeerStats::kCoactivation;
  return option;
}

GravityStats::GravityStats(int64_t E, int64_t d, torch::TensorOptions opts, PeerStats peer)
    : E_(E), d_(d), peer_(peer) {
  const auto peer_size = peer == PeerStats::kCoactivation ? E * E : E * d;
  flat_ = torch::zeros({E + E * d + peer_size}, opts.dtype(torch::kFloat32));
  make_views();
}

void GravityStats::make_views() {
  n_ = flat_.narrow(0, 0, E_);
  S_ = flat_.narrow(0, E_, E_ * d_).view({E_, d_});
  if (peer_ == PeerStats::kCoactivation) {
    C_ = flat_.narrow(0, E_ + E_ * d_, E_ * E_).view({E_, E_});
  } else {
    P_ = flat_.narrow(0, E_ + E_ * d_, E_ * d_).view({E_, d_});
  }
}

const Tensor& GravityStats::C() const {
  TORCH_CHECK(peer_ == PeerStats::kCoactivation, "co-activation counts requested from peer-sum statistics");
  return C_;
}

Tensor GravityStats::peer_sums(const Tensor& keys) const {
  return peer_ == PeerStats::kPeerSum ? P_ : torch::matmul(C_, keys);
}

void GravityStats::add(const Routing& r, const Tensor& keys) {
  // index_add_ rather than bincount: no host synchronisation on CUDA.
  torch::NoGradGuard no_grad;
  const auto k = r.indices.size(1);
  auto flat_idx = r.indices.reshape({-1});                                   // (N*k,)
  n_.index_add_(0, flat_idx, torch::ones({flat_idx.size(0)}, n_.options()));
  // S_i += sum of the normalised queries of the tokens that selected i (routers without
  // queries, the baselines, count selections and co-activations only).
  if (r.queries.defined()) {
    auto q_rep = r.queries.unsqueeze(1).expand({-1, k, -1}).reshape({-1, d_});   // (N*k, d)
    S_.index_add_(0, flat_idx, q_rep);
  }
  if (peer_ == PeerStats::kPeerSum) {
    // P_i += (sum of the token's selected keys) - K_i, for each selected i.
    TORCH_CHECK(keys.defined(), "peer-sum statistics need the keys the tokens were routed with");
    auto selected = keys.index_select(0, flat_idx).view({-1, k, d_});       // (N, k, d)
    auto peers = selected.sum(1, /*keepdim=*/true) - selected;              // (N, k, d)
    P_.index_add_(0, flat_idx, peers.reshape({-1, d_}));
    return;
  }
  if (k > 1) {
    // C_ij += #tokens that selected both i and j (i != j): every ordered pair (a, b), a != b, of
    // a token's selection, as flat indices i*E + j.
    if (!off_diag_.defined() || off_diag_.size(0) != k * (k - 1) || off_diag_.device() != r.indices.device()) {
      // Built once, on the device: a host-built index copied at every forward would be a
      // host-to-device copy (and on CUDA a synchronisation) per micro-batch.
      std::vector<int64_t> off_diag;
      for (int64_t a = 0; a < k; ++a)
        for (int64_t b = 0; b < k; ++b)
          if (a != b) off_diag.push_back(a * k + b);
      off_diag_ = torch::tensor(off_diag, torch::kLong).to(r.indices.device());
    }
    auto pairs = (r.indices.unsqueeze(2) * E_ + r.indices.unsqueeze(1)).reshape({-1, k * k});  // (N, k*k)
    auto pair_idx = pairs.index_select(1, off_diag_).reshape({-1});
    C_.view({-1}).index_add_(0, pair_idx, torch::ones({pair_idx.size(0)}, C_.options()));
  }
}

Tensor routing_scores(const Tensor& q, const Tensor& keys, ScoreFunction score) {
  if (score == ScoreFunction::kDot) return torch::matmul(q, keys.t());
  auto qn = F::normalize(q, F::NormalizeFuncOptions().dim(-1).eps(1e-12));
  auto kn = F::normalize(keys, F::NormalizeFuncOptions().dim(-1).eps(1e-12));
  return torch::matmul(qn, kn.t());
}

Routing route(const Tensor& q, const Tensor& keys, int64_t top_k, ScoreFunction score, const RouterOptions& r,
              const Tensor& log_scale, const Tensor& selection_bias, const Tensor& chosen) {
  // Routing runs in fp32 whatever autocast says: keys and statistics stay fp32 (docs/design.md §3).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  auto q32 = q.to(torch::kFloat32);
  Tensor indices, selected;
  if (chosen.defined()) {
    // Only the k found keys are scored: (N, 1, d) . (N, k, d) -> (N, k), best first.
    auto picked = keys.index_select(0, chosen.reshape({-1})).view({chosen.size(0), top_k, -1});
    auto qs = score == ScoreFunction::kDot ? q32 : F::normalize(q32, F::NormalizeFuncOptions().dim(-1).eps(1e-12));
    if (score == ScoreFunction::kCosine) picked = F::normalize(picked, F::NormalizeFuncOptions().dim(-1).eps(1e-12));
    auto s = (qs.unsqueeze(1) * picked).sum(-1);                            // (N, k)
    auto order = std::get<1>(s.detach().sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
    indices = chosen.gather(1, order);
    selected = s.gather(1, order);
  } else {
    auto scores = routing_scores(q32, keys, score);                          // (N, E)
    indices = stable_top_k(selection_bias.defined() ? scores.detach() + selection_bias : scores.detach(),
                           top_k);                                           // (N, k)
    selected = scores.gather(1, indices);                                    // (N, k)
  }
  auto scaled = log_scale.defined() ? selected * log_scale.clamp_max(std::log(r.max_scale)).exp()
                                    : selected / r.temperature;
  auto logits = scaled.clamp(-r.logit_clamp, r.logit_clamp);
  Routing out;
  out.indices = indices;
  out.gates = torch::softmax(logits, -1);
  out.scores = selected.detach();
  out.queries = F::normalize(q32.detach(), F::NormalizeFuncOptions().dim(-1).eps(1e-12));
  return out;
}

Tensor knowledge_gravity(Tensor& keys, Tensor& usage, const Tensor& n, const Tensor& S,
                         const Tensor& P, int64_t top_k, const GravityOptions& g) {
  torch::NoGradGuard no_grad;
  const auto E = keys.size(0);
  const auto old = keys.clone();  // Jacobi: every force reads the keys from before the update

  // Usage: fraction of this step's selections, scaled so a fair share is 1.
  auto share = n * static_cast<double>(E) / n.sum().clamp_min(1.0);       // E n_i / (k N)
  if (g.usage == UsageTracking::kEma) {
    usage.mul_(g.ema_decay).add_(share, 1.0 - g.ema_decay);
  } else {
    usage.add_(share);
  }
  auto inertia = g.inertia ? 1.0 / (1.0 + usage) : torch::ones_like(usage);   // (E,)

  auto delta = torch::zeros_like(old);
  if (g.use_alpha && g.alpha != 0) {
    auto hit = (n > 0).unsqueeze(1);                                           // (E, 1)
    auto mean_q = S / n.clamp_min(1).unsqueeze(1);
    delta += torch::where(hit, (g.alpha * inertia).unsqueeze(1) * (mean_q - old), 0.0);
  }
  if (g.use_beta && g.beta != 0 && top_k > 1) {
    auto c = n * static_cast<double>(top_k - 1);                               // (E,) = sum_j C_ij
    auto hit = (c > 0).unsqueeze(1);
    auto mean_p = P / c.clamp_min(1).unsqueeze(1);
    delta += torch::where(hit, (g.beta * inertia).unsqueeze(1) * (mean_p - old), 0.0);
  }
  if (g.use_repulsion && g.repulsion != 0 && E > 1) {
    auto mean_others = (old.sum(0, /*keepdim=*/true) - old) / static_cast<double>(E - 1);
    delta += g.repulsion * (old - mean_others);
  }
  keys.add_(delta);

  auto decayed = torch::zeros({E}, usage.options().dtype(torch::kBool));
  if (g.use_delta && g.delta != 0) {
    if (g.decay_threshold >= 0) {
      decayed = usage < g.decay_threshold;
    } else {
      // At or below the percentile, so that experts tied at the bottom (typically several never
      // selected, all at the same usage) still decay; when every usage is equal nobody is below
      // anybody and nothing decays.
      auto q = torch::quantile(usage, g.decay_percentile / 100.0);
      decayed = (usage <= q) & (usage < usage.max());
    }
    keys.mul_(torch::where(decayed, 1.0 - g.delta, 1.0).unsqueeze(1));
  }
  if (g.max_key_norm > 0) {
    auto norm = keys.norm(2, 1, /*keepdim=*/true);
    keys.mul_((g.max_key_norm / norm.clamp_min(1e-12)).clamp_max(1.0));
  }
  return decayed;
}

KeyStore::KeyStore(Tensor keys, Tensor usage, int64_t top_k, RouterOptions router,
                   GravityOptions gravity)
    : keys_(std::move(keys)), usage_(std::move(usage)), top_k_(top_k), router_(std::move(router)),
      score_(router_.score), gravity_(std::move(gravity)),
      peer_stats_(resolve_peer_stats(gravity_.peer_stats, keys_.size(0), keys_.size(1))),
      init_pending_(router_.key_init == KeyInit::kData) {}

Routing KeyStore::route(const Tensor& q) const {
  if (router_.search == KeySearch::kExact) return model::route(q, keys_, top_k_, score_, router_, log_scale_, selection_bias_);
  sync_index();
  auto q_cpu = q.detach().to(torch::kCPU, torch::kFloat32);
  if (score_ == ScoreFunction::kCosine) q_cpu = F::normalize(q_cpu, F::NormalizeFuncOptions().dim(-1).eps(1e-12));
  auto chosen = index_->search(q_cpu.contiguous(), top_k_);                 // (N, k) CPU int64
  if ((chosen < 0).any().item<bool>()) {
    throw ConfigError(fmt::format("router.search = '{}' found fewer than top_k = {} keys for a token: raise "
                                  "router.ivf_probe (or router.hnsw_ef_search)", choice_name(router_.search), top_k_));
  }
  return model::route(q, keys_, top_k_, score_, router_, log_scale_, selection_bias_, chosen.to(keys_.device()));
}

void KeyStore::sync_index() const {
  if (index_ && index_version_ == keys_._version()) return;
  if (!index_) {
    KeyIndexOptions o;
    o.kind = router_.search;
    o.cosine = score_ == ScoreFunction::kCosine;
    o.ivf_lists = router_.ivf_lists;
    o.ivf_probe = router_.ivf_probe;
    o.hnsw_m = router_.hnsw_m;
    o.hnsw_ef_search = router_.hnsw_ef_search;
    index_ = KeyIndex::make(o, keys_.size(1));
  }
  // The centres are trained once, from the keys of the first build; every later rebuild (a load,
  // the k-means key initialisation) fills the lists with the stored centres, so the index is a
  // function of (centres, keys) at any step, whatever was interrupted or resumed.
  auto keys = keys_.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  torch::NoGradGuard no_grad;
  if (index_state_.defined() && index_state_.abs().sum().item<double>() > 0) {
    index_->restore(index_state_.detach().cpu(), keys);
  } else {
    index_->build(keys);
    if (index_state_.defined()) index_state_.copy_(index_->state());
  }
  index_version_ = keys_._version();
}

GravityStats& KeyStore::stats() {
  if (!stats_ || stats_->flat().device() != keys_.device()) {
    stats_.emplace(keys_.size(0), keys_.size(1), keys_.options(), peer_stats_);
    top1_sum_ = torch::zeros({1}, keys_.options().dtype(torch::kFloat32));
  }
  return *stats_;
}

Tensor& KeyStore::top1_sum() {
  stats();
  return top1_sum_;
}

void KeyStore::accumulate(const Routing& r) {
  torch::NoGradGuard no_grad;
  stats().add(r, keys_);
  top1_sum_.add_(r.scores.select(1, 0).sum());
  if (gravity_.restart_below > 0 || init_pending_) {
    // An evenly strided subset of every micro-batch: deterministic, bounded, and every
    // micro-batch of the step is represented equally.
    auto q = r.queries, top1 = r.indices.select(1, 0);
    const auto pool = init_pending_ ? std::max(kRestartPool, kInitPoolPerExpert * keys_.size(0)) : kRestartPool;
    const auto stride = std::max<int64_t>(1, q.size(0) / pool);
    q = q.slice(0, 0, q.size(0), stride);
    top1 = top1.slice(0, 0, top1.size(0), stride);
    pool_q_ = pool_q_.defined() ? torch::cat({pool_q_, q}) : q;
    pool_top1_ = pool_top1_.defined() ? torch::cat({pool_top1_, top1}) : top1;
  }
}

double KeyStore::mean_top1_score() const {
  if (!stats_) return 0.0;
  double selections = stats_->n().sum().item<double>();
  return selections > 0 ? top1_sum_.item<double>() * static_cast<double>(top_k_) / selections : 0.0;
}

void KeyStore::gather_pool(parallel::Communicator* world) {
  if (!pool_q_.defined() || !world || world->world_size() <= 1) return;
  // Every rank's pool (equal sizes: equal micro-batches), in rank order: one pool everywhere.
  pool_q_ = world->allgather(pool_q_).reshape({-1, pool_q_.size(1)});
  pool_top1_ = world->allgather(pool_top1_).reshape({-1});
}

void KeyStore::clear_step() {
  stats().zero();
  top1_sum_.zero_();
  pool_q_ = Tensor();
  pool_top1_ = Tensor();
}

void KeyStore::apply_gravity(uint64_t restart_seed, parallel::Communicator* world) {
  torch::NoGradGuard no_grad;
  auto& s = stats();
  // The index follows the keys incrementally when it is in step with them; otherwise the next
  // route rebuilds it.
  const bool follow = index_ && index_version_ == keys_._version() && !router_.freeze_keys;
  const auto before = follow ? keys_.clone() : Tensor();
  if (!router_.freeze_keys) {
    knowledge_gravity(keys_, usage_, s.n(), s.S(), s.peer_sums(keys_), top_k_, gravity_);
    if (gravity_.restart_below > 0) gather_pool(world);
    if (gravity_.restart_below > 0 && pool_q_.defined()) {
      auto dead = (usage_ < gravity_.restart_below).nonzero().view({-1}).cpu();
      auto gen = at::make_generator<at::CPUGeneratorImpl>(restart_seed);
      auto top1 = pool_top1_.cpu();
      for (int64_t i = 0; i < dead.size(0); ++i) {
        int64_t e = dead[i].item<int64_t>();
        auto others = (top1 != e).nonzero().view({-1});  // tokens that chose another expert
        if (others.numel() == 0) continue;
        int64_t pick = torch::randint(others.size(0), {1}, gen, torch::kLong).item<int64_t>();
        keys_[e].copy_(pool_q_[others[pick].item<int64_t>()]);
        usage_[e] = 1.0;
      }
    }
  }
  if (follow) {
    auto moved = (keys_ != before).any(1).nonzero().view({-1}).cpu();       // (M,)
    index_->update(keys_.detach().to(torch::kCPU, torch::kFloat32).contiguous(), moved);
    index_version_ = keys_._version();
  }
  init_pending_ = false;  // a resumed run never re-initialises its keys
  clear_step();
}

void KeyStore::init_keys_from_queries(uint64_t seed, parallel::Communicator* world) {
  torch::NoGradGuard no_grad;
  gather_pool(world);
  if (pool_q_.defined()) {
    auto centres = kmeans_plus_plus(pool_q_, keys_.size(0), seed, /*rounds=*/5);  // (m, d), m <= E
    keys_.narrow(0, 0, centres.size(0)).copy_(centres);  // the rest (a pool smaller than E) keep theirs
  }
  init_pending_ = false;
  clear_step();
}

Tensor kmeans_plus_plus(const Tensor& points, int64_t k, uint64_t seed, int rounds) {
  torch::NoGradGuard no_grad;
  const auto x = points.to(torch::kCPU, torch::kFloat64);                    // (P, d)
  const int64_t P = x.size(0), m = std::min(k, P);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<int64_t> chosen = {torch::randint(P, {1}, gen, torch::kLong).item<int64_t>()};
  auto d2 = (x - x[chosen[0]]).pow(2).sum(1);                                // (P,) to the nearest centre
  while (static_cast<int64_t>(chosen.size()) < m) {
    int64_t next;
    if (d2.sum().item<double>() > 0) {
      next = torch::multinomial(d2, 1, /*replacement=*/false, gen).item<int64_t>();
    } else {  // every point sits on a centre: take the first one not yet chosen
      next = 0;
      while (std::find(chosen.begin(), chosen.end(), next) != chosen.end()) ++next;
    }
    chosen.push_back(next);
    d2 = torch::minimum(d2, (x - x[next]).pow(2).sum(1));
  }
  auto centres = x.index_select(0, torch::tensor(chosen));                   // (m, d)
  for (int r = 0; r < rounds; ++r) {
    auto assign = torch::mm(x, centres.t()).argmax(1);                       // (P,) nearest by cosine
    auto sums = torch::zeros_like(centres).index_add_(0, assign, x);
    auto hit = (torch::bincount(assign, {}, m) > 0).unsqueeze(1);
    centres = torch::where(hit, F::normalize(sums, F::NormalizeFuncOptions().dim(1).eps(1e-12)), centres);
  }
  return centres.to(torch::kFloat32);
}

}  // namespace some::model
