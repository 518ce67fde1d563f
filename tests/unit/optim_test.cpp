// Optimizers and gradient clipping against values computed by PyTorch (optim_reference.py, whose
// output is pasted below so the test needs no Python), plus the properties the flat-buffer layout
// relies on: per-run weight decay, zero padding, exact resume, thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tune/nn/params.h"
#include "tune/ops/ops.h"
#include "tune/train/optim.h"

namespace tune {
namespace {

// clang-format off
// BEGIN optim_reference.py output (torch 2.11.0+cu130)
const std::vector<float> kInit = {
    -0.100000001f, 0.0808077157f, 0.237143949f, 0.347849339f, 0.397940427f, 0.380637616f,
    0.298282743f, 0.162022173f, -0.00970186573f, -0.193647325f, -0.364918083f, -0.500333369f,
    -0.58156544f, -0.597619891f, -0.546323836f, 0.445603669f, 0.497462183f, 0.4819915f,
    0.401285529f, 0.266267449f, 0.0952113271f, -0.0887312144f, 0.504248202f, 0.37048611f,
    0.200114995f, 0.0161937792f, -0.156384647f, -0.294262618f, -0.378778994f, -0.398494899f,
    -0.350741833f, -0.241982982f, -0.086938329f, 0.0934075341f, 0.274645656f, 0.432246327f,
    0.544879019f, 0.597299397f, 0.58241266f,
};
const std::vector<float> kGrads = {
    1.0f, 0.862807095f, 0.488872081f, -0.0192024931f, -0.522008181f, -0.881582201f, -0.999262512f,
    -0.842759371f, -0.455014944f, 0.057579156f, 0.554374337f, 0.899057031f, 0.997051179f,
    0.821468592f, 0.420486659f, 1.38159144f, 0.896750987f, 0.165854663f, -0.610549808f,
    -1.21942806f, -1.49371254f, -1.35814333f, 1.39341342f, 0.476952106f, -0.570378125f, 0.0f,
    -1.95109725f, -1.90563643f, -1.33729589f, -0.402020246f, 0.643564045f, 1.51256347f,
    1.96653688f, 1.88092041f, 1.27920592f, 0.326495409f, -0.715800762f, -1.5616914f, -1.97907591f,
    0.558361888f, 0.783843696f, 0.73937273f, 0.437151134f, -0.0398956873f, -0.560872853f,
    -0.982831657f, -1.18999255f, -1.12551343f, -0.807086527f, -0.322083652f, 0.196417212f,
    0.606146812f, 0.794681132f, 0.710289001f, 1.22850037f, 1.26384616f, 0.897533298f,
    0.230072811f, -0.555393577f, -1.24334502f, -1.64501727f, 1.79190552f, 1.42775691f,
    0.61697489f, 0.0f, -1.39311302f, -2.04087925f, -2.18353415f, -1.78193545f, -0.946275949f,
    0.0941511095f, 1.05386722f, 1.66953993f, 1.7722373f, 1.33378065f, 0.474476278f, -0.56989485f,
    -1.51277208f, -0.249774531f, 0.229412019f, 0.535896838f, 0.58558476f, 0.364842176f,
    -0.065762274f, -0.58807683f, -1.0587858f, -1.34873319f, -1.3783617f, -1.13954151f,
    -0.69780165f, -0.174349189f, 0.287187874f, 0.560170293f, 0.385048926f, 0.923499286f,
    1.09880018f, 0.862851441f, 0.280394197f, -0.488753647f, -1.23354876f, 1.22775686f,
    1.59190547f, 1.40950334f, 0.0f, -0.25852561f, -1.28646886f, -2.07117748f, -2.39733887f,
    -2.17545843f, -1.46641755f, -0.464766622f, 0.554655313f, 1.31213331f, 1.5998261f, 1.33879495f,
    0.600663066f, -0.412036657f, -1.13051128f, -0.629199505f, -0.119875774f, 0.257708669f,
    0.399949998f, 0.267819166f, -0.10242895f, -0.609203517f, -1.11345279f, -1.47681785f,
    -1.5995965f, -1.44810009f, -1.06389689f, -0.552406967f, -0.0539759174f, -0.837797999f,
    -0.0564633682f, 0.57573247f, 0.885324001f, 0.787363589f, 0.308730245f, -0.419245839f,
    -0.123047896f, 0.793413401f, 1.32754183f, 0.0f, 0.80769062f, -0.103649095f, -1.15118051f,
    -2.04747581f, -2.54660416f, -2.51161194f, -1.9521004f, -1.02159154f, 0.02459592f,
    0.899403155f, 1.36279535f, 1.28762424f, 0.694515765f, -1.75486457f, -1.47369969f,
    -1.00768101f, -0.484677643f, -0.0481942706f, 0.182004228f, 0.142754659f, -0.155173451f,
    -0.630032837f, -1.15152884f, -1.57657027f, -1.78853178f, -1.72925425f, -1.41500235f,
    -0.932002604f, -1.94572282f, -1.29910433f, -0.515538752f, 0.189974725f, 0.623853147f,
    0.667046368f, 0.307702839f, -1.70435238f, -0.678482234f, 0.314045101f, 0.0f, 1.1936034f,
    0.839296043f, 0.0351890065f, -0.998082101f, -1.97700226f, -2.63296962f, -2.78599596f,
    -2.39409328f, -1.56479383f, -0.525645792f, 0.438223362f, 1.06234157f, 1.1754595f,
};
const std::vector<float> kAdamWParams = {
    -0.109899998f, 0.0707269087f, 0.226906806f, 0.357501477f, 0.407542497f, 0.390256971f,
    0.307984442f, 0.171860158f, 0.00030783657f, -0.20345369f, -0.374553174f, -0.509833038f,
    -0.590983868f, -0.607022285f, -0.55577749f, 0.435603678f, 0.487462193f, 0.471991509f,
    0.41128552f, 0.276267439f, 0.105211325f, -0.0787312165f, 0.493743956f, 0.360115647f,
    0.209914893f, 0.0161775853f, -0.146228254f, -0.283968359f, -0.368400216f, -0.388096422f,
    -0.36039108f, -0.251740992f, -0.0968513861f, 0.0833141282f, 0.264371037f, 0.421814084f,
    0.554334164f, 0.606702089f, 0.591830254f, -0.119332097f, 0.0606806204f, 0.216825783f,
    0.350091398f, 0.414475203f, 0.399566948f, 0.317673892f, 0.181592092f, 0.00963337347f,
    -0.196389109f, -0.376244903f, -0.517552912f, -0.600040674f, -0.616409421f, -0.564979315f,
    0.425636709f, 0.477557182f, 0.463555336f, 0.414965093f, 0.2855272f, 0.115144938f,
    -0.0687506795f, 0.483293623f, 0.350665957f, 0.208787844f, 0.0161614083f, -0.136264056f,
    -0.273681015f, -0.358242601f, -0.379072726f, -0.357654393f, -0.258730352f, -0.106242433f,
    0.0732645988f, 0.254190683f, 0.412668347f, 0.555258453f, 0.615028024f, 0.601114035f,
    -0.12511079f, 0.0517177843f, 0.20676288f, 0.341452569f, 0.41500929f, 0.407155216f,
    0.327022731f, 0.191353828f, 0.0191218425f, -0.188115463f, -0.371146977f, -0.518189013f,
    -0.605942667f, -0.624939382f, -0.574247777f, 0.416689605f, 0.467684656f, 0.454555601f,
    0.411593646f, 0.291274399f, 0.124248192f, -0.0588437393f, 0.472962916f, 0.340910465f,
    0.202817023f, 0.016145248f, -0.127791718f, -0.263652265f, -0.348006397f, -0.369659841f,
    -0.350898266f, -0.257997036f, -0.112067282f, 0.064191483f, 0.244052589f, 0.403093427f,
    0.54999876f, 0.61874342f, 0.609192133f, -0.124738514f, 0.0498517528f, 0.202942312f,
    0.337091058f, 0.41357848f, 0.409407526f, 0.331059277f, 0.196082398f, 0.0239407215f,
    -0.183663547f, -0.36754939f, -0.515981317f, -0.605634272f, -0.626773059f, -0.577875495f,
    0.414530665f, 0.463682801f, 0.450030446f, 0.408711284f, 0.291833073f, 0.12752156f,
    -0.0543036014f, 0.468786329f, 0.336101413f, 0.19908455f, 0.0161371753f, -0.125416681f,
    -0.259375691f, -0.343021452f, -0.364798069f, -0.346864164f, -0.255555868f, -0.111930586f,
    0.0618102103f, 0.239801422f, 0.3982822f, 0.546403944f, 0.618128896f, 0.611552894f,
    -0.122546114f, 0.0507907048f, 0.202509448f, 0.335362434f, 0.412503988f, 0.410800219f,
    0.334208697f, 0.200325862f, 0.0286495686f, -0.179049417f, -0.363462389f, -0.512703061f,
    -0.603362262f, -0.625675738f, -0.578113258f, 0.415088624f, 0.462569505f, 0.447245061f,
    0.40590027f, 0.291253418f, 0.129281759f, -0.0507916287f, 0.4673132f, 0.332905263f,
    0.195512667f, 0.0161291063f, -0.124774724f, -0.256580174f, -0.338758349f, -0.360048473f,
    -0.342528462f, -0.252241194f, -0.109998249f, 0.0620855503f, 0.238167882f, 0.394859493f,
    0.542797446f, 0.616389036f, 0.61215508f,
};
const std::vector<float> kAdamWExpAvg = {
    -0.191149637f, -0.0716645718f, 0.0178258903f, 0.0527668223f, 0.0235709362f, -0.0617508329f,
    -0.179787412f, -0.298151195f, -0.384364903f, -0.41477263f, -0.381030977f, -0.292398185f,
    -0.173193797f, -0.0561258383f, 0.0266838986f, -0.0585812703f, 0.0907815397f, 0.165576756f,
    0.145281732f, 0.0354651064f, -0.133741006f, -0.315908849f, 0.139990509f, 0.267879635f,
    0.272608012f, 0.0f, -0.0584575012f, -0.303411722f, -0.514772356f, -0.634545147f,
    -0.629866004f, -0.502018988f, -0.286083311f, -0.0413088389f, 0.165141866f, 0.27662158f,
    0.26254195f, 0.12676613f, -0.0934508666f,
};
const std::vector<float> kAdamWExpAvgSq = {
    0.271590769f, 0.186425745f, 0.0975812003f, 0.038581349f, 0.0248863921f, 0.0503952317f,
    0.0991977528f, 0.159049466f, 0.223559529f, 0.28368935f, 0.321377903f, 0.316094369f,
    0.260887921f, 0.172882408f, 0.0865579695f, 0.37175706f, 0.224244267f, 0.119169801f,
    0.0900814906f, 0.126236752f, 0.194690913f, 0.272873461f, 0.430701554f, 0.26392433f,
    0.207861036f, 0.0f, 0.34346813f, 0.436861515f, 0.533807933f, 0.650982678f, 0.772286713f,
    0.836854935f, 0.783951342f, 0.613611102f, 0.401434004f, 0.248337597f, 0.209217697f,
    0.264710337f, 0.357272804f,
};
const std::vector<double> kAdamWParamsF64 = {
    -0.12254610418314048, 0.050790712777227673, 0.20250944328253534, 0.33536247019009763,
    0.41250399929262077, 0.41080023878102739, 0.33420869831341465, 0.20032583613464011,
    0.028649570230739496, -0.17904939361081174, -0.36346240229937682, -0.51270307767867906,
    -0.60336230855471051, -0.62567581012914297, -0.57811325786111478, 0.4150885944820627,
    0.46256951214066405, 0.44724504435975687, 0.40590026600442136, 0.29125341868686344,
    0.12928176017966039, -0.050791625358520873, 0.46731318978332259, 0.33290525294909212,
    0.19551266644180015, 0.016129105202900448, -0.12477471969006533, -0.25658017260512656,
    -0.33875833804889655, -0.36004845062327956, -0.34252846915233692, -0.25224122111663333,
    -0.10999825336799254, 0.062085546058926147, 0.23816786707750737, 0.39485951155995286,
    0.54279747027955216, 0.61638901547398883, 0.61215509110990063,
};
const std::vector<float> kSgdParams = {
    -0.199900001f, -0.00555380108f, 0.188019603f, 0.34942174f, 0.449743301f, 0.468415201f,
    0.397910714f, 0.246136084f, 0.0358093306f, -0.199211597f, -0.419990599f, -0.589738727f,
    -0.680688977f, -0.679169118f, -0.587826192f, 0.307444513f, 0.407787085f, 0.46540603f,
    0.462340504f, 0.388210267f, 0.244582579f, 0.0470831208f, 0.364402622f, 0.322420418f,
    0.256952703f, 0.0161775853f, 0.0388814583f, -0.103404701f, -0.24467063f, -0.357894391f,
    -0.414747506f, -0.392997354f, -0.283505082f, -0.0947779194f, 0.146450415f, 0.399164528f,
    0.615914226f, 0.752871215f, 0.77973783f, -0.345446289f, -0.161657989f, 0.0696823969f,
    0.306772351f, 0.499905705f, 0.6030339f, 0.58546114f, 0.440591723f, 0.189284936f,
    -0.123311572f, -0.436927497f, -0.689255536f, -0.829834163f, -0.831352353f, -0.695619345f,
    0.0602512434f, 0.200694889f, 0.36072579f, 0.494282693f, 0.553498149f, 0.503351212f,
    0.33381775f, 0.0589866526f, 0.136063173f, 0.246152177f, 0.0161468331f, 0.353893369f,
    0.272558749f, 0.0946249738f, -0.142802492f, -0.377310246f, -0.537932396f, -0.565518379f,
    -0.431004047f, -0.146295458f, 0.235613689f, 0.631782353f, 0.949122488f, 1.10782802f,
    -0.451115042f, -0.324931294f, -0.0904804468f, 0.209522665f, 0.508067727f, 0.730163932f,
    0.812478721f, 0.721039772f, 0.462097019f, 0.0829579309f, -0.337779641f, -0.708351254f,
    -0.945800066f, -0.996204734f, -0.847954631f, -0.200727582f, -0.0780380145f, 0.156633541f,
    0.436745524f, 0.67421782f, 0.785118341f, 0.715233803f, -0.338722378f, -0.190984949f,
    0.0952352136f, 0.0161030088f, 0.662902772f, 0.739300191f, 0.607014179f, 0.290656894f,
    -0.125693545f, -0.52119422f, -0.772288144f, -0.788642049f, -0.540833771f, -0.0718002766f,
    0.511552393f, 1.06473315f, 1.443205f, -0.441914856f, -0.366781831f, -0.156514689f,
    0.152770117f, 0.491489112f, 0.773616374f, 0.919351816f, 0.877341032f, 0.640304029f,
    0.24957861f, -0.213014379f, -0.644185126f, -0.944316983f, -1.04226983f, -0.913382709f,
    -0.276278138f, -0.200644642f, 0.0360054076f, 0.366587609f, 0.68917346f, 0.896477044f,
    0.907833338f, -0.511369705f, -0.37773177f, -0.0391021185f, 0.0160752367f, 0.761241019f,
    0.954146624f, 0.89484483f, 0.587942064f, 0.114927024f, -0.38782087f, -0.767343342f,
    -0.898105264f, -0.719335377f, -0.255070806f, 0.389053375f, 1.05184436f, 1.5586772f,
    -0.345670491f, -0.330578953f, -0.165483207f, 0.12585032f, 0.478732318f, 0.803236544f,
    1.00794017f, 1.02533221f, 0.831871808f, 0.456988871f, -0.0217906348f, -0.496686935f,
    -0.856047332f, -1.01245713f, -0.925211191f, -0.246987507f, -0.246035382f, -0.0467829779f,
    0.293946743f, 0.671440899f, 0.963347554f, 1.06578779f, -0.58127898f, -0.511690915f,
    -0.175688431f, 0.0160422046f, 0.789684653f, 1.10506654f, 1.1516856f, 0.905108869f,
    0.430278182f, -0.135942459f, -0.623209596f, -0.87646842f, -0.801387489f, -0.393604457f,
    0.256698579f, 0.986601472f, 1.60304987f,
};
const double kClipNorm = 6.86954689;
const std::vector<float> kClipGrads = {
    0.145569995f, 0.125598818f, 0.0711651072f, -0.00279530673f, -0.0759887248f, -0.128331915f,
    -0.145462632f, -0.122680478f, -0.0662365258f, 0.008381797f, 0.0807002708f, 0.130875722f,
    0.145140737f, 0.119581178f, 0.0612102412f, 0.201118261f, 0.130540043f, 0.024143463f,
    -0.0888777301f, -0.177512139f, -0.217439726f, -0.197704911f, 0.202839181f, 0.0694299191f,
    -0.0830299407f, 0.0f, -0.284021229f, -0.277403474f, -0.194670156f, -0.0585220866f,
    0.0936836153f, 0.220183849f, 0.286268771f, 0.273805588f, 0.186214f, 0.0475279354f,
    -0.104199111f, -0.227335408f, -0.288094074f,
};
const double kNoClipNorm = 6.86954689;
const std::vector<float> kNoClipGrads = {
    1.0f, 0.862807095f, 0.488872081f, -0.0192024931f, -0.522008181f, -0.881582201f, -0.999262512f,
    -0.842759371f, -0.455014944f, 0.057579156f, 0.554374337f, 0.899057031f, 0.997051179f,
    0.821468592f, 0.420486659f, 1.38159144f, 0.896750987f, 0.165854663f, -0.610549808f,
    -1.21942806f, -1.49371254f, -1.35814333f, 1.39341342f, 0.476952106f, -0.570378125f, 0.0f,
    -1.95109725f, -1.90563643f, -1.33729589f, -0.402020246f, 0.643564045f, 1.51256347f,
    1.96653688f, 1.88092041f, 1.27920592f, 0.326495409f, -0.715800762f, -1.5616914f, -1.97907591f,
};
// END optim_reference.py output
// clang-format on

constexpr int kSteps = 5;
constexpr int64_t kNumel = 15 + 7 + 17;  // w1 (3, 5), b1 (7), w2 (17), in declaration order

double lr_at(int step, double base, double later) {
  return step < 3 ? base : later;
}

// Copies kNumel values, in declaration order, into the tensors `view(i)` returns.
template <typename View>
void scatter(nn::ParamStore& store, const float* values, View view) {
  int64_t at = 0;
  for (int i = 0; i < static_cast<int>(store.infos().size()); ++i) {
    Tensor dst = view(store, i);
    std::vector<float> v(values + at, values + at + dst.numel());
    dst.copy_from(Tensor::from_f32(dst.shape(), v));
    at += dst.numel();
  }
}

void set_grads(nn::ParamStore& store, int step) {
  scatter(store, kGrads.data() + step * kNumel, [](nn::ParamStore& s, int i) { return s.grad(i); });
}

// The reference setup: w1 and w2 decay, b1 does not; declared interleaved so that the optimizer
// sees three runs and the buffer has padding after each parameter (offsets 0, 16, 32; numel 64).
nn::ParamStore make_store(DType dtype) {
  nn::ParamStore store;
  store.add("w1", {3, 5}, nn::Role::trainable, nn::Decay::yes);
  store.add("b1", {7}, nn::Role::trainable, nn::Decay::no);
  store.add("w2", {17}, nn::Role::trainable, nn::Decay::yes);
  store.allocate(dtype);
  scatter(store, kInit.data(), [](nn::ParamStore& s, int i) { return s.param(i); });
  return store;
}

// Values of the parameters (or of a same-layout state buffer) in declaration order, padding
// skipped.
std::vector<double> gather(const nn::ParamStore& store, const Tensor& buffer) {
  std::vector<double> out;
  for (const nn::ParamInfo& p : store.infos())
    for (int64_t j = 0; j < numel_of(p.shape); ++j) out.push_back(buffer.item(p.offset + j));
  return out;
}

// Indices of the flat buffer that belong to no parameter.
std::vector<int64_t> padding(const nn::ParamStore& store) {
  std::vector<bool> used(static_cast<size_t>(store.trainable_numel()), false);
  for (const nn::ParamInfo& p : store.infos())
    for (int64_t j = 0; j < numel_of(p.shape); ++j) used[static_cast<size_t>(p.offset + j)] = true;
  std::vector<int64_t> out;
  for (size_t i = 0; i < used.size(); ++i)
    if (!used[i]) out.push_back(static_cast<int64_t>(i));
  return out;
}

// |actual - expected| <= rel * max(|expected|, floor). The pasted values match us bit for bit
// (torch 2.11 on an x86 CPU with AVX2, where its add_/addcmul_/lerp_ round once, as our std::fma
// does); the tolerance admits one rounding more or less, which is what another torch build gives
// (a CPU without FMA, or torch < 2.0, whose AdamW computes exp_avg as m * b1 + (1 - b1) * g
// rather than lerp). `floor` is for values that cancel down from larger terms: exp_avg = -0.04
// built from gradients of about 1 moves by 1e-8 when one of those terms rounds differently.
template <typename T>
void expect_rel_near(const std::vector<double>& actual, const T* expected, double rel,
                     const std::string& what, double floor = 0.0) {
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double e = static_cast<double>(expected[i]);
    const double err = std::abs(actual[i] - e) / std::max({std::abs(e), floor, 1e-30});
    worst = std::max(worst, err);
    EXPECT_LE(err, rel) << what << " element " << i << ": " << actual[i] << " vs torch " << e;
  }
  // Visible with --gtest_output=xml: how close this build actually is.
  ::testing::Test::RecordProperty(what, str(worst));
}

TEST(AdamW, MatchesTorchTrajectoryF32) {
  nn::ParamStore store = make_store(DType::f32);
  train::AdamW opt(store,
                   {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  for (int step = 0; step < kSteps; ++step) {
    set_grads(store, step);
    opt.step(lr_at(step, 1e-2, 5e-3));
    expect_rel_near(gather(store, store.trainable()), kAdamWParams.data() + step * kNumel, 1e-6,
                    "adamw_f32_step" + std::to_string(step));
  }
  EXPECT_EQ(opt.steps_taken(), kSteps);
  expect_rel_near(gather(store, opt.exp_avg()), kAdamWExpAvg.data(), 1e-6, "exp_avg", 0.1);
  expect_rel_near(gather(store, opt.exp_avg_sq()), kAdamWExpAvgSq.data(), 1e-6, "exp_avg_sq");
}

TEST(AdamW, MatchesTorchTrajectoryF64) {
  nn::ParamStore store = make_store(DType::f64);
  train::AdamW opt(store,
                   {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  for (int step = 0; step < kSteps; ++step) {
    set_grads(store, step);
    opt.step(lr_at(step, 1e-2, 5e-3));
  }
  EXPECT_EQ(opt.exp_avg().dtype(), DType::f64);
  expect_rel_near(gather(store, store.trainable()), kAdamWParamsF64.data(), 1e-13, "adamw_f64");
}

TEST(AdamW, DecayNoParameterIsNotDecayed) {
  // With zero gradients the moments stay 0 and the Adam term is 0 / (0 + eps) = 0, so what is
  // left is the decoupled decay alone: p * (1 - lr * wd) for Decay::yes, p unchanged for no.
  nn::ParamStore store = make_store(DType::f32);
  const std::vector<double> before = gather(store, store.trainable());
  train::AdamW opt(store, {.weight_decay = 0.1});
  opt.step(1e-2);
  const std::vector<double> after = gather(store, store.trainable());
  const float factor = static_cast<float>(1.0 - 1e-2 * 0.1);
  for (int64_t i = 0; i < kNumel; ++i) {
    const bool in_b1 = i >= 15 && i < 22;
    const float expected =
        in_b1 ? static_cast<float>(before[i]) : static_cast<float>(before[i]) * factor;
    EXPECT_EQ(after[i], expected) << "element " << i << (in_b1 ? " (b1, Decay::no)" : "");
  }
}

TEST(AdamW, PaddingStaysZero) {
  nn::ParamStore store = make_store(DType::f32);
  const std::vector<int64_t> pad = padding(store);
  ASSERT_EQ(pad.size(), 64u - kNumel);
  train::AdamW opt(store, {.weight_decay = 0.1});
  for (int step = 0; step < kSteps; ++step) {
    set_grads(store, step);
    opt.step(1e-2);
  }
  for (int64_t i : pad) {
    EXPECT_EQ(store.trainable().item(i), 0.0) << "weight padding at " << i;
    EXPECT_EQ(opt.exp_avg().item(i), 0.0) << "exp_avg padding at " << i;
    EXPECT_EQ(opt.exp_avg_sq().item(i), 0.0) << "exp_avg_sq padding at " << i;
  }
}

TEST(AdamW, ResumeFromStateIsBitIdentical) {
  // A checkpoint holds weights, m, v and the step counter; restoring them into a fresh optimizer
  // must continue exactly as if the run had never stopped.
  nn::ParamStore straight = make_store(DType::f32);
  train::AdamW a(straight, {.beta2 = 0.95, .weight_decay = 0.1});
  for (int step = 0; step < kSteps; ++step) {
    set_grads(straight, step);
    a.step(1e-2);
  }

  nn::ParamStore first = make_store(DType::f32);
  train::AdamW b(first, {.beta2 = 0.95, .weight_decay = 0.1});
  for (int step = 0; step < 3; ++step) {
    set_grads(first, step);
    b.step(1e-2);
  }
  nn::ParamStore resumed = make_store(DType::f32);
  resumed.trainable().copy_from(first.trainable());
  train::AdamW c(resumed, {.beta2 = 0.95, .weight_decay = 0.1});
  c.exp_avg().copy_from(b.exp_avg());
  c.exp_avg_sq().copy_from(b.exp_avg_sq());
  c.set_steps_taken(b.steps_taken());
  for (int step = 3; step < kSteps; ++step) {
    set_grads(resumed, step);
    c.step(1e-2);
  }
  EXPECT_EQ(c.steps_taken(), kSteps);
  EXPECT_EQ(straight.trainable().to_f32_vector(), resumed.trainable().to_f32_vector());
  EXPECT_EQ(a.exp_avg().to_f32_vector(), c.exp_avg().to_f32_vector());
  EXPECT_EQ(a.exp_avg_sq().to_f32_vector(), c.exp_avg_sq().to_f32_vector());
}

TEST(AdamW, RejectsBadConfig) {
  nn::ParamStore store = make_store(DType::f32);
  EXPECT_THROW(train::AdamW(store, {.beta1 = 1.0}), Error);
  EXPECT_THROW(train::AdamW(store, {.lr = -1.0}), Error);
  nn::ParamStore unallocated;
  unallocated.add("w", {4}, nn::Role::trainable, nn::Decay::yes);
  EXPECT_THROW(train::AdamW(unallocated, {}), Error);
}

TEST(Sgd, MatchesTorchTrajectoryWithMomentum) {
  nn::ParamStore store = make_store(DType::f32);
  train::Sgd opt(store, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  for (int step = 0; step < kSteps; ++step) {
    set_grads(store, step);
    opt.step(lr_at(step, 0.1, 0.05));
    expect_rel_near(gather(store, store.trainable()), kSgdParams.data() + step * kNumel, 1e-6,
                    "sgd_step" + std::to_string(step));
  }
  for (int64_t i : padding(store)) {
    EXPECT_EQ(store.trainable().item(i), 0.0) << "weight padding at " << i;
    EXPECT_EQ(opt.momentum_buffer().item(i), 0.0) << "momentum padding at " << i;
  }
}

TEST(Sgd, WithoutMomentumIsPlainDescent) {
  nn::ParamStore store = make_store(DType::f64);
  train::Sgd opt(store, {});
  EXPECT_FALSE(opt.momentum_buffer().defined());
  const std::vector<double> before = gather(store, store.trainable());
  set_grads(store, 0);
  opt.step(0.5);
  const std::vector<double> after = gather(store, store.trainable());
  for (int64_t i = 0; i < kNumel; ++i)
    EXPECT_EQ(after[i], before[i] + -0.5 * static_cast<double>(kGrads[i])) << i;
}

TEST(ClipGradNorm, MatchesTorchWhenClipping) {
  nn::ParamStore store = make_store(DType::f32);
  set_grads(store, 0);
  const double norm = train::clip_grad_norm(store, 1.0);
  EXPECT_NEAR(norm, kClipNorm, 1e-6 * kClipNorm);
  expect_rel_near(gather(store, store.grads()), kClipGrads.data(), 1e-6, "clipped_grads");
  EXPECT_NEAR(train::grad_norm(store), 1.0, 1e-6);
}

TEST(ClipGradNorm, MatchesTorchWhenNotClipping) {
  nn::ParamStore store = make_store(DType::f32);
  set_grads(store, 0);
  const std::vector<float> before = store.grads().to_f32_vector();
  EXPECT_NEAR(train::clip_grad_norm(store, 100.0), kNoClipNorm, 1e-6 * kNoClipNorm);
  expect_rel_near(gather(store, store.grads()), kNoClipGrads.data(), 1e-6, "unclipped_grads");
  EXPECT_EQ(store.grads().to_f32_vector(), before);  // not even rescaled by 1
}

TEST(ClipGradNorm, NonFiniteNormThrowsAndLeavesGradsAlone) {
  nn::ParamStore store = make_store(DType::f32);
  set_grads(store, 0);
  store.grads().data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  try {
    train::clip_grad_norm(store, 1.0);
    FAIL() << "expected tune::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NaN or inf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("learning rate"), std::string::npos) << msg;
  }
  EXPECT_EQ(store.grads().item(0), static_cast<double>(kGrads[0]));
  store.grads().data<float>()[3] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(train::clip_grad_norm(store, 0.0), Error);  // measuring only still fails loudly
}

TEST(OptimRuns, MergeAdjacentParametersWithTheSameDecay) {
  nn::ParamStore store;
  store.add("a", {3}, nn::Role::trainable, nn::Decay::yes);
  store.add("frozen", {5}, nn::Role::frozen, nn::Decay::yes);
  store.add("b", {20}, nn::Role::trainable, nn::Decay::yes);
  store.add("norm", {4}, nn::Role::trainable, nn::Decay::no);
  store.add("bias", {4}, nn::Role::trainable, nn::Decay::no);
  store.add("c", {1}, nn::Role::trainable, nn::Decay::yes);
  store.allocate(DType::f32);
  const std::vector<train::DecayRun> runs = train::decay_runs(store);
  ASSERT_EQ(runs.size(), 3u);
  // a at 0, b at 16, norm at 48, bias at 64, c at 80; buffer 96 elements.
  EXPECT_EQ(runs[0].begin, 0);
  EXPECT_EQ(runs[0].end, 48);
  EXPECT_EQ(runs[0].decay, nn::Decay::yes);
  EXPECT_EQ(runs[1].begin, 48);
  EXPECT_EQ(runs[1].end, 80);
  EXPECT_EQ(runs[1].decay, nn::Decay::no);
  EXPECT_EQ(runs[2].begin, 80);
  EXPECT_EQ(runs[2].end, store.trainable_numel());
  EXPECT_TRUE(train::decay_runs(nn::ParamStore()).empty());
}

TEST(OptimOps, ResultDoesNotDependOnHowTheBufferIsSplit) {
  // Long enough for the kernels' parallel loop; chunks of 1000 run serially. Elementwise
  // updates must agree bit for bit, which is what makes ZeRO shards and thread counts harmless.
  const int64_t n = 1 << 17;
  std::vector<float> p(n), g(n);
  for (int64_t i = 0; i < n; ++i) {
    p[i] = std::sin(0.001f * static_cast<float>(i));
    g[i] = std::cos(0.003f * static_cast<float>(i));
  }
  Tensor whole = Tensor::from_f32({n}, p), grad = Tensor::from_f32({n}, g);
  Tensor m = Tensor::zeros({n}, DType::f32), v = Tensor::zeros({n}, DType::f32);
  Tensor parts = whole.clone(), m2 = m.clone(), v2 = v.clone();
  for (int64_t step = 1; step <= 3; ++step) {
    ops::adamw_update(whole, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
    for (int64_t at = 0; at < n; at += 1000) {
      const int64_t len = std::min<int64_t>(1000, n - at);
      Tensor pp = parts.narrow(at, len), mm = m2.narrow(at, len), vv = v2.narrow(at, len);
      ops::adamw_update(pp, grad.narrow(at, len), mm, vv, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
    }
  }
  EXPECT_EQ(whole.to_f32_vector(), parts.to_f32_vector());
  EXPECT_EQ(v.to_f32_vector(), v2.to_f32_vector());
}

TEST(OptimOps, ErrorsNameTheOpAndShapes) {
  Tensor p = Tensor::zeros({12}, DType::f32), g = Tensor::zeros({10}, DType::f32);
  Tensor m = Tensor::zeros({12}, DType::f32), v = Tensor::zeros({12}, DType::f32);
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string numel =
      message([&] { ops::adamw_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1); });
  EXPECT_NE(numel.find("[adamw_update] grad has 10 elements but param has 12"), std::string::npos)
      << numel;
  EXPECT_NE(numel.find("(10)"), std::string::npos) << numel;

  Tensor g64 = Tensor::zeros({12}, DType::f64);
  const std::string dtype =
      message([&] { ops::adamw_update(p, g64, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1); });
  EXPECT_NE(dtype.find("[adamw_update] param is f32 (12) but grad is f64 (12)"), std::string::npos)
      << dtype;

  Tensor pb = Tensor::zeros({12}, DType::bf16);
  const std::string bf16 = message([&] { ops::sgd_update(pb, g, m, 0.1, 0.0, 0.0, 1); });
  EXPECT_NE(bf16.find("[sgd_update] param is bf16 (12); CPU kernels compute in f32 or f64"),
            std::string::npos)
      << bf16;

  Tensor g12 = Tensor::zeros({12}, DType::f32);
  const std::string step0 =
      message([&] { ops::adamw_update(p, g12, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0); });
  EXPECT_NE(step0.find("[adamw_update] step must be >= 1"), std::string::npos) << step0;

  Tensor none;
  const std::string no_buf = message([&] { ops::sgd_update(p, g12, none, 0.1, 0.9, 0.0, 1); });
  EXPECT_NE(no_buf.find("[sgd_update] momentum_buf is undefined"), std::string::npos) << no_buf;
  EXPECT_NO_THROW(ops::sgd_update(p, g12, none, 0.1, 0.0, 0.0, 1));  // no momentum, no buffer

  // State read and written in one pass must not share memory with anything else.
  const std::string alias =
      message([&] { ops::adamw_update(p, g12, m, m, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1); });
  EXPECT_NE(alias.find("[adamw_update] exp_avg overlaps exp_avg_sq"), std::string::npos) << alias;
}

// The CPU's mixed-precision AdamW: with an f32 compute copy and grad_scale 1 it is adamw_update
// to the bit; with bf16/f16 it is adamw_update on the master with g = f32(grad) * f32(scale),
// then the master rounded to the compute dtype.
TEST(AdamWMixed, F32WithUnitScaleIsAdamW) {
  const int64_t n = 1 << 16;  // the parallel loop
  std::vector<float> p0(n), g0(n);
  for (int64_t i = 0; i < n; ++i) {
    p0[i] = std::sin(0.001f * static_cast<float>(i));
    g0[i] = std::cos(0.003f * static_cast<float>(i));
  }
  const Tensor g = Tensor::from_f32({n}, g0);
  Tensor p = Tensor::from_f32({n}, p0), m = Tensor::zeros({n}, DType::f32),
         v = Tensor::zeros({n}, DType::f32);
  Tensor master = p.clone(), param = p.clone(), m2 = m.clone(), v2 = v.clone();
  for (int64_t step = 1; step <= 3; ++step) {
    ops::adamw_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
    ops::adamw_update_mixed(master, param, g, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 0.01, step, 1.0);
  }
  EXPECT_EQ(master.to_f32_vector(), p.to_f32_vector());
  EXPECT_EQ(param.to_f32_vector(), p.to_f32_vector());
  EXPECT_EQ(m2.to_f32_vector(), m.to_f32_vector());
  EXPECT_EQ(v2.to_f32_vector(), v.to_f32_vector());
}

TEST(AdamWMixed, Bf16AndF16FollowTheF32MasterWithScaledGradients) {
  const int64_t n = 1031;
  for (DType dtype : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    std::vector<float> p0(n), g0(n);
    for (int64_t i = 0; i < n; ++i) {
      p0[i] = std::sin(0.01f * static_cast<float>(i));
      g0[i] = 100.0f * std::cos(0.03f * static_cast<float>(i));  // loss-scaled
    }
    const double scale = 0.5 / 128;
    const Tensor g = Tensor::from_f32({n}, g0).to(dtype);
    Tensor master = Tensor::from_f32({n}, p0), param = master.to(dtype);
    Tensor m = Tensor::zeros({n}, DType::f32), v = Tensor::zeros({n}, DType::f32);
    // The reference: the f32 op on the master with the gradient scaled in f32.
    Tensor ref = master.clone(), rm = m.clone(), rv = v.clone();
    Tensor gs = g.to(DType::f32);
    for (int64_t i = 0; i < n; ++i) gs.data<float>()[i] *= static_cast<float>(scale);
    for (int64_t step = 1; step <= 3; ++step) {
      ops::adamw_update_mixed(master, param, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, step, scale);
      ops::adamw_update(ref, gs, rm, rv, 1e-3, 0.9, 0.95, 1e-8, 0.1, step);
    }
    EXPECT_EQ(master.to_f32_vector(), ref.to_f32_vector());
    EXPECT_EQ(m.to_f32_vector(), rm.to_f32_vector());
    EXPECT_EQ(v.to_f32_vector(), rv.to_f32_vector());
    EXPECT_EQ(param.to_f32_vector(), ref.to(dtype).to_f32_vector());
    EXPECT_NE(master.to_f32_vector(), std::vector<float>(p0.begin(), p0.end()));
  }
}

TEST(AdamWMixed, ErrorsNameTheTensor) {
  const int64_t n = 8;
  Tensor master = Tensor::zeros({n}, DType::f32), param = Tensor::zeros({n}, DType::bf16);
  Tensor g = Tensor::zeros({n}, DType::bf16), m = Tensor::zeros({n}, DType::f32),
         v = Tensor::zeros({n}, DType::f32);
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NO_THROW(
      ops::adamw_update_mixed(master, param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, 1.0));
  Tensor g32 = Tensor::zeros({n}, DType::f32);
  const std::string mixed = message([&] {
    ops::adamw_update_mixed(master, param, g32, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, 1);
  });
  EXPECT_NE(mixed.find("[adamw_update_mixed] grad is f32 (8) but param is bf16 (8)"),
            std::string::npos)
      << mixed;
  Tensor master16 = Tensor::zeros({n}, DType::bf16);
  const std::string m16 = message([&] {
    ops::adamw_update_mixed(master16, param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, 1);
  });
  EXPECT_NE(m16.find("[adamw_update_mixed] master is bf16 (8); it must be f32"), std::string::npos)
      << m16;
  const std::string step0 = message(
      [&] { ops::adamw_update_mixed(master, param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 1); });
  EXPECT_NE(step0.find("step must be >= 1"), std::string::npos) << step0;
  const std::string alias = message(
      [&] { ops::adamw_update_mixed(master, param, g, m, m, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, 1); });
  EXPECT_NE(alias.find("exp_avg overlaps exp_avg_sq"), std::string::npos) << alias;
  Tensor short_m = Tensor::zeros({n - 1}, DType::f32);
  const std::string numel = message([&] {
    ops::adamw_update_mixed(master, param, g, short_m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, 1);
  });
  EXPECT_NE(numel.find("exp_avg has 7 elements but master has 8"), std::string::npos) << numel;
}

}  // namespace
}  // namespace tune
